import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as z from 'zod/mini';
import { formatIssues, toIssues } from 'hvplug/protocol';
import { HvplugError, InvalidConfigError } from '../errors/index.js';
import { isExecutable, locateCommand, type CommandProblem } from './executable.js';
import { PluginSpec, PluginSpecFields, type PluginSpecInput } from './plugin-spec.js';

export const BUILTIN_PLUGINS = ['example-proprietary', 'qemu', 'cloud-hypervisor'] as const;
const CONVENTION_PREFIX = 'hvplug-plugin-';

/** The installed package's root, found by walking up from this module (src/ in dev, dist/src/ when built). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'plugins'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the hvplug package root');
    dir = up;
  }
  return dir;
}

/** The bundled plugin's executable: the launcher that starts its startup snapshot (see scripts/bundle.mjs). */
export function builtinPluginPath(name: string): string {
  return join(packageRoot(), 'plugins', name, 'dist', `${CONVENTION_PREFIX}${name}`);
}

/** The config file, in the spirit of Kata's configuration.toml: one [plugins.<name>] table per plugin. */
const ConfigFile = z.strictObject({
  plugins: z._default(z.record(z.string(), z.strictObject(z.omit(PluginSpecFields, { name: true, source: true }).shape)), {}),
  pluginDirs: z._default(z.array(z.string()), []),
});

/** Strict schemas report every key they do not know at once; say each with where it was, as a person reads it. */
function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .flatMap((i) => {
      const at = i.path.map(String).join('.');
      if (i.code !== 'unrecognized_keys') return [`${at || '(top level)'}: ${i.message}`];
      return i.keys.map((k) => `${at ? `${at}: ` : ''}unknown key "${k}"`);
    })
    .join('; ');
}

export interface DiscoveryOptions {
  specs?: readonly PluginSpecInput[];
  configFile?: string;
  pluginDirs?: readonly string[];
  pathEnv?: string;
}

/**
 * Finds plugins, first match wins: specs given through the API, the config file, plugin directories and
 * PATH (`hvplug-plugin-<name>` executables), then the plugins bundled with hvplug.
 */
export class PluginCatalog {
  private fileSpecs: PluginSpec[] | undefined;
  private fileDirs: string[] = [];

  constructor(private readonly opts: DiscoveryOptions = {}) {}

  private async loadFile(): Promise<PluginSpec[]> {
    if (this.fileSpecs) return this.fileSpecs;
    this.fileSpecs = [];
    const file = this.opts.configFile;
    if (!file) return this.fileSpecs;
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new HvplugError(`cannot read plugin config ${file}: ${err.message}`, 'InvalidConfig');
    });
    // Loaded only when there is a file to read: most embedders give their plugins in code.
    const { parse: parseToml } = await import('smol-toml');
    let doc: unknown;
    try {
      doc = parseToml(text);
    } catch (err) {
      throw new InvalidConfigError(`${file}: ${(err as Error).message}`, []);
    }
    const parsed = ConfigFile.safeParse(doc);
    if (!parsed.success) throw new InvalidConfigError(`${file}: ${describeIssues(parsed.error.issues)}`, toIssues(parsed.error));
    this.fileDirs = parsed.data.pluginDirs.map((d) => resolve(dirname(file), d));
    for (const [name, table] of Object.entries(parsed.data.plugins)) {
      // A table with neither names the bundled plugin of that name; certificate paths are the file's, like pluginDirs.
      const command = table.command ?? (table.connect === undefined ? builtinPluginPath(name) : undefined);
      const tls = table.tls && {
        cert: resolve(dirname(file), table.tls.cert),
        key: resolve(dirname(file), table.tls.key),
        ca: resolve(dirname(file), table.tls.ca),
      };
      const spec = PluginSpec.safeParse({ ...table, name, command, tls, source: resolve(file) });
      if (!spec.success) {
        const issues = toIssues(spec.error).map((i) => ({ ...i, path: ['plugins', name, ...i.path] }));
        throw new InvalidConfigError(`${file}: ${formatIssues(issues)}`, issues);
      }
      this.fileSpecs.push(spec.data);
    }
    return this.fileSpecs;
  }

  private searchDirs(): string[] {
    return [...(this.opts.pluginDirs ?? []), ...this.fileDirs, ...(this.opts.pathEnv ?? process.env.PATH ?? '').split(delimiter).filter(Boolean)];
  }

  /**
   * The plugin called `name`. `recorded` is where a VM record says the plugin came from (PluginSpec.source), looked
   * at when nothing else names it: the config file that defined it, or the directory it was found in.
   */
  async resolve(name: string, recorded?: string): Promise<PluginSpec> {
    const given = this.opts.specs?.find((s) => s.name === name);
    if (given) return PluginSpec.parse({ source: 'api', ...given });
    const fromFile = (await this.loadFile()).find((s) => s.name === name);
    if (fromFile) return fromFile;
    for (const dir of this.searchDirs()) {
      const candidate = join(dir, `${CONVENTION_PREFIX}${name}`);
      if (await isExecutable(candidate)) return PluginSpec.parse({ name, command: candidate, source: dir });
    }
    const builtin = builtinPluginPath(name);
    if (await isExecutable(builtin)) return PluginSpec.parse({ name, command: builtin, source: 'builtin' });
    const fromRecord = recorded === undefined ? undefined : await this.fromRecorded(name, recorded);
    if (fromRecord && typeof fromRecord !== 'string') return fromRecord;
    // The directories searched are PATH's, long and known to the user; the names that do exist help more.
    const found = (await this.list()).map((s) => s.name);
    throw new HvplugError(
      `no plugin named ${name}: not in the config file, no ${CONVENTION_PREFIX}${name} in the plugin directories or on PATH, not bundled` +
        `${fromRecord ? `; its VMs' records say it came from ${recorded}, but ${fromRecord}` : ''}; plugins found: ${found.join(', ') || 'none'}`,
      'PluginNotFound',
    );
  }

  /** The spec at a recorded source, or why there is none (undefined: the source is not a place to look). */
  private async fromRecorded(name: string, recorded: string): Promise<PluginSpec | string | undefined> {
    const st = await stat(recorded).catch(() => undefined);
    if (!st) return recorded === 'api' || recorded === 'builtin' ? undefined : 'it is gone';
    if (st.isDirectory()) {
      const candidate = join(recorded, `${CONVENTION_PREFIX}${name}`);
      return (await isExecutable(candidate)) ? PluginSpec.parse({ name, command: candidate, source: recorded }) : `it has no ${CONVENTION_PREFIX}${name}`;
    }
    try {
      const spec = (await new PluginCatalog({ configFile: recorded }).loadFile()).find((s) => s.name === name);
      return spec ?? `it no longer has a [plugins.${name}] table`;
    } catch (err) {
      return `it cannot be used: ${(err as Error).message}`;
    }
  }

  /** Why a listed plugin could not be started, as far as can be told without starting it. */
  async problemWith(spec: PluginSpec): Promise<CommandProblem | undefined> {
    // A listening plugin is found out by connecting to it, which listing does not do.
    if (spec.command === undefined) return undefined;
    return (await locateCommand(spec.command, spec.env.PATH ?? this.opts.pathEnv ?? process.env.PATH)).problem;
  }

  /** Everything discoverable, first source of each name winning. */
  async list(): Promise<PluginSpec[]> {
    const out = new Map<string, PluginSpec>();
    const add = (s: PluginSpec): void => {
      if (!out.has(s.name)) out.set(s.name, s);
    };
    for (const s of this.opts.specs ?? []) add(PluginSpec.parse({ source: 'api', ...s }));
    for (const s of await this.loadFile()) add(s);
    for (const dir of this.searchDirs()) {
      const entries = await readdir(dir).catch(() => [] as string[]);
      for (const e of entries) {
        if (e.startsWith(CONVENTION_PREFIX) && (await isExecutable(join(dir, e)))) {
          add(PluginSpec.parse({ name: e.slice(CONVENTION_PREFIX.length), command: join(dir, e), source: dir }));
        }
      }
    }
    for (const name of BUILTIN_PLUGINS) {
      if (await isExecutable(builtinPluginPath(name))) add(PluginSpec.parse({ name, command: builtinPluginPath(name), source: 'builtin' }));
    }
    return [...out.values()];
  }
}
