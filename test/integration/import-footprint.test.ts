import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureCliBuilt, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

/**
 * What an embedder's `import 'hvplug'` loads. Every package loaded costs the importing process memory for as
 * long as it lives (bench figure 9 measures how much); what only a spawned plugin, a made logger or a config
 * file needs is loaded when first used.
 */
const PROBE = `
import { register, createRequire } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const { port1, port2 } = new MessageChannel();
const loaded = new Set();
port1.on('message', (url) => loaded.add(url));
port1.unref();
register('data:text/javascript,' + encodeURIComponent(
  'let port; export function initialize(d) { port = d.port; }' +
  'export async function load(url, ctx, next) { port.postMessage(url); return next(url, ctx); }'
), { data: { port: port2 }, transferList: [port2] });
const builtinsBefore = new Set(process.moduleLoadList);
const mod = await import(process.argv[1]);
const builtins = process.moduleLoadList.filter((m) => !builtinsBefore.has(m) && m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
let plugin = null;
if (process.argv[2]) {
  // An embedder's host: one plugin spawned and its handshake made (a request written, its answer read).
  const { stateDir, runtimeDir, command } = JSON.parse(process.argv[2]);
  const host = new mod.PluginHost({ stateDir, runtimeDir, plugins: [{ name: 'example-proprietary', command }] });
  plugin = (await host.hypervisor('example-proprietary')).info.plugin.name;
  await host.close();
}
const builtinsAfterHost = process.moduleLoadList.filter((m) => !builtinsBefore.has(m) && m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
// Messages from the hooks thread arrive asynchronously.
await new Promise((r) => setTimeout(r, 200));
const required = Object.keys(createRequire(import.meta.url).cache);
const packages = new Set();
for (const f of [...loaded, ...required]) {
  const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(decodeURIComponent(f));
  if (m) packages.add(m[1]);
}
process.stdout.write(JSON.stringify({ packages: [...packages].sort(), builtins, builtinsAfterHost, plugin }));
`;

interface Probed {
  packages: string[];
  /** The node built-in modules the import loaded (before any host ran). */
  builtins: string[];
  /** The same, once the host (when one ran) had spawned its plugin, called it and closed. */
  builtinsAfterHost: string[];
  /** The name the plugin gave in its handshake, when the probe ran a host. */
  plugin: string | null;
}

/** A node process of its own running `script` as an ES module from the package root (where `hvplug` resolves). */
function moduleScript(script: string): Promise<{ stdout: string }> {
  return execa(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd() });
}

/** What a process loads that imports `specifier` and, with `host` given, runs a PluginHost that starts one plugin. */
async function probe(specifier: string, host?: { stateDir: string; runtimeDir: string; command: string }): Promise<Probed> {
  const args = ['--no-warnings', '--input-type=module', '-e', PROBE, specifier, ...(host ? [JSON.stringify(host)] : [])];
  const r = await execa(process.execPath, args, { cwd: process.cwd(), env: { HVPLUG_CONFIG: '' } });
  return JSON.parse(r.stdout) as Probed;
}

const packagesLoadedBy = async (specifier: string): Promise<string[]> => (await probe(specifier)).packages;

/** The files of dist/pkg a bundle entry point loads, itself included: its static and dynamic imports, followed. */
function bundleClosure(entry: string): Map<string, string> {
  const files = new Map<string, string>();
  const pending = [resolve('dist/pkg', entry)];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (files.has(file)) continue;
    const text = readFileSync(file, 'utf8');
    files.set(file, text);
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*["'](\.[^"']+)["']/g)) pending.push(resolve(dirname(file), m[1] as string));
  }
  return files;
}

beforeAll(ensureCliBuilt, 120_000);
afterAll(removeTempDirs);

describe("import 'hvplug'", () => {
  it('loads neither execa, pino, smol-toml, vscode-jsonrpc nor prom-client: pino loads when a logger is made, smol-toml when a config file is read, prom-client when metrics are asked for; the host uses neither execa nor vscode-jsonrpc', async () => {
    const loaded = await packagesLoadedBy('hvplug');
    for (const lazy of ['execa', 'pino', 'smol-toml', 'vscode-jsonrpc', 'prom-client']) expect(loaded, lazy).not.toContain(lazy);
  });

  it('loads no vscode-jsonrpc in a host that spawned a plugin and spoke to it: the host has its own JSON-RPC end and frame reader/writer', async () => {
    const dir = await tempDir();
    const r = await probe('hvplug', { stateDir: join(dir, 'state'), runtimeDir: join(dir, 'run'), command: pluginExecutable('example-proprietary') });
    expect(r.plugin).toBe('example-proprietary');
    expect(r.packages).not.toContain('vscode-jsonrpc');
  }, 30_000);

  it("loads neither perf_hooks nor crypto in a host that spawned a plugin and called it: deadlines on process.hrtime (performance.now() loads 12 modules, ~0.9 MiB), random ids from /dev/urandom (crypto's ~1 MiB)", async () => {
    const dir = await tempDir();
    const r = await probe('hvplug', { stateDir: join(dir, 'state'), runtimeDir: join(dir, 'run'), command: pluginExecutable('example-proprietary') });
    expect(r.plugin).toBe('example-proprietary');
    expect(r.builtinsAfterHost).toContain('child_process');
    expect(r.builtinsAfterHost.filter((m) => m.includes('perf') || m.includes('crypto'))).toEqual([]);
  }, 30_000);

  it("loads neither node:child_process, node:crypto nor node's streams: they load when a plugin is spawned, a record written", async () => {
    const { builtins } = await probe('hvplug');
    // fs is loaded by node itself before the probe; fs/promises is the first of hvplug's own.
    expect(builtins).toContain('fs/promises');
    // stream: what node:fs imported as an ES module would load (scripts/bundle-package.mjs takes it by require).
    for (const lazy of ['child_process', 'crypto', 'net', 'stream']) expect(builtins, lazy).not.toContain(lazy);
  });

  it("loads zod from the package's bundle (scripts/bundle-package.mjs), not its ~95 modules from node_modules", async () => {
    for (const specifier of ['hvplug', 'hvplug/protocol', 'hvplug/plugin-sdk', 'hvplug/conformance']) {
      expect(await packagesLoadedBy(specifier), specifier).not.toContain('zod');
    }
  });

  it("hvplug/plugin-sdk loads neither pino nor vscode-jsonrpc: a plugin logs through the SDK's own stderr logger unless it passes one, and speaks JSON-RPC through the SDK's own dispatcher", async () => {
    const loaded = await packagesLoadedBy('hvplug/plugin-sdk');
    expect(loaded).not.toContain('pino');
    expect(loaded).not.toContain('vscode-jsonrpc');
  });

  it("hvplug, hvplug/plugin-sdk and hvplug/protocol bundle zod/mini, not zod's classic API (~2 MiB more in every plugin and embedder), and one locale of zod's 60", () => {
    for (const entry of ['core.js', 'plugin-sdk.js', 'protocol.js']) {
      // The modules bundled, as each file's source map names them.
      const zod = [...bundleClosure(entry).keys()]
        .flatMap((file) => (JSON.parse(readFileSync(`${file}.map`, 'utf8')) as { sources: string[] }).sources)
        .map((source) => /node_modules\/zod\/(.*)$/.exec(source)?.[1])
        .filter((m) => m !== undefined);
      expect(zod, entry).toContain('v4/mini/schemas.js');
      expect(zod.filter((m) => m.startsWith('v4/classic/') || m === 'index.js'), entry).toEqual([]);
      expect(zod.filter((m) => m.startsWith('v4/locales/')), entry).toEqual(['v4/locales/en.js']);
    }
  });

  it("gives zod's English messages in a process that loads only hvplug/protocol: zod/mini registers no locale, the protocol does", async () => {
    const r = await moduleScript(
      "const p = await import('hvplug/protocol'); const r = p.VmConfig.safeParse({ vcpus: { boot: 0 }, devices: 'x' }); process.stdout.write(p.formatIssues(p.toIssues(r.error)))",
    );
    expect(r.stdout).toBe('vcpus.boot: Too small: expected number to be >=1; devices: Invalid input: expected array, received string');
  });

  it("exports zod/mini schemas that an embedder's zod classic composes, and whose errors are zod's core $ZodError (not classic's ZodError)", async () => {
    const script = [
      "const [{ z }, h] = await Promise.all([import('zod'), import('hvplug')]);",
      "const Config = z.object({ spec: h.PluginSpec, mark: z.optional(h.MigrationMark), vms: z.array(h.VmRecord) });",
      "const ok = Config.parse({ spec: { name: 'x', command: 'c' }, vms: [] }).spec.isolation;",
      "const err = h.PluginSpec.safeParse({ name: 'X', command: 'c' }).error;",
      "process.stdout.write(JSON.stringify([ok, err instanceof z.core.$ZodError, err instanceof z.ZodError, typeof h.PluginSpec.optional]));",
    ].join('\n');
    const r = await moduleScript(script);
    expect(JSON.parse(r.stdout)).toEqual(['shared', true, false, 'undefined']);
  });

  it("gives zod's English messages for the host's own schemas in a process that loads only hvplug", async () => {
    const r = await moduleScript(
      "const h = await import('hvplug'); const r = h.PluginSpec.safeParse({ name: 'x', command: 'y', startTimeoutMs: 1.5, args: 'z' }); process.stdout.write(r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '))",
    );
    expect(r.stdout).toBe('args: Invalid input: expected array, received string; startTimeoutMs: Invalid input: expected int, received number');
  });

  it("has zod's English messages configured in a process that loads only hvplug/plugin-sdk, as a plugin does", async () => {
    // zod keeps its configuration on globalThis, where a plugin's own schemas (of a zod of its own) find it too.
    const script =
      "await import('hvplug/plugin-sdk'); const c = globalThis.__zod_globalConfig; process.stdout.write(c.localeError({ code: 'invalid_type', expected: 'number', input: 'x' }))";
    const r = await moduleScript(script);
    expect(r.stdout).toBe('Invalid input: expected number, received string');
  });

  it('shares one copy of what two entry points both export: the bundles are built together, their common code one chunk', async () => {
    const r = await moduleScript("const [a, b] = await Promise.all([import('hvplug'), import('hvplug/protocol')]); process.stdout.write(String(a.ErrorCode === b.ErrorCode))");
    expect(r.stdout).toBe('true');
  });
});
