import { dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ensureCliBuilt, removeTempDirs, tempDir } from '../helpers.js';

/**
 * What the built CLI loads for a command, as `node dist/src/cli/main.js <args>` runs it. Each package and each
 * module a command loads is paid for at every start of hvplug (bench figure 9 measures it): a command loads what it
 * uses, and --version and help use next to nothing.
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
const [entry, how, ...args] = process.argv.slice(1);
let code;
if (how === 'main') {
  const { main } = await import(entry);
  code = await main(args);
} else {
  // As the executable: the entry point runs the command and exits, so what it loaded is reported first.
  const exit = process.exit.bind(process);
  process.exit = (c) => { code = c; report().then(() => exit(c)); };
  process.argv = [process.argv[0], entry, ...args];
  await import(entry);
}
async function report() {
  // Messages from the hooks thread arrive asynchronously.
  await new Promise((r) => setTimeout(r, 300));
  const required = Object.keys(createRequire(import.meta.url).cache);
  process.stderr.write('\\nLOADED ' + JSON.stringify([...loaded, ...required].map((f) => decodeURIComponent(f))) + '\\n');
}
if (how === 'main') {
  await report();
  process.exit(code);
}
`;

interface Footprint {
  exitCode: number;
  stdout: string;
  packages: string[];
  /** The CLI's own modules, relative to dist/src. */
  modules: string[];
  /** Files of the CLI's bundle, relative to dist/cli. */
  bundled: string[];
}

/**
 * What a command loads: through the modules tsc wrote (dist/src/cli/cli.js's main), or as the executable runs it
 * (dist/src/cli/main.js, which prefers the bundle).
 */
async function footprint(args: readonly string[], how: 'modules' | 'executable' = 'modules', running?: (child: ResultPromise) => Promise<void>): Promise<Footprint> {
  const entry = how === 'modules' ? join(dirname(CLI), 'cli.js') : CLI;
  const child = execa(process.execPath, ['--no-warnings', '--input-type=module', '-e', PROBE, entry, how === 'modules' ? 'main' : 'run', ...args], {
    reject: false,
    env: { HVPLUG_CONFIG: '', HVPLUG_STATE_DIR: dir, HVPLUG_RUNTIME_DIR: dir },
  });
  await running?.(child);
  const r = await child;
  const line = r.stderr.split('\n').find((l) => l.startsWith('LOADED '));
  if (!line) throw new Error(`the probe reported nothing: ${r.stderr}`);
  const files = JSON.parse(line.slice('LOADED '.length)) as string[];
  const packages = new Set<string>();
  const modules = new Set<string>();
  const bundled = new Set<string>();
  for (const f of files) {
    const b = /\/dist\/cli\/(.+\.js)$/.exec(f);
    if (b) bundled.add(b[1]!);
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f);
    if (m) packages.add(m[1]!);
    const own = /\/dist\/src\/(.+\.js)$/.exec(f);
    if (own && !m) modules.add(own[1]!);
  }
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, packages: [...packages].sort(), modules: [...modules].sort(), bundled: [...bundled].sort() };
}

let dir: string;

beforeAll(async () => {
  await ensureCliBuilt();
  dir = await tempDir('hvplug-cli-footprint-');
}, 120_000);

afterAll(removeTempDirs);

/** The CLI's command modules: loaded only by the command they implement. */
const COMMAND_MODULE = /^cli\/(run|lifecycle|vms|vm-|conformance|context|daemon|inspect|plugins|spec)/;

describe('what the CLI loads', () => {
  it('--version loads no package and none of the commands', async () => {
    const f = await footprint(['--version']);
    expect(f.exitCode).toBe(0);
    expect(f.stdout).toMatch(/^\d+\.\d+\.\d+/);
    expect(f.packages).toEqual([]);
    expect(f.modules.filter((m) => !m.startsWith('cli/'))).toEqual(['core/version.js']);
    expect(f.bundled).toEqual([]);
    expect(f.modules.filter((m) => COMMAND_MODULE.test(m))).toEqual([]);
  });

  it('help lists every command, loading no package and none of the commands', async () => {
    const f = await footprint(['help']);
    expect(f.exitCode).toBe(0);
    for (const name of ['run', 'create', 'pause', 'resume', 'ps', 'daemon', 'conformance']) expect(f.stdout).toMatch(new RegExp(`^  ${name} `, 'm'));
    expect(f.packages).toEqual([]);
    expect(f.modules.filter((m) => COMMAND_MODULE.test(m))).toEqual([]);
  });

  it('a command loads its own module, not the others', async () => {
    const f = await footprint(['ps', '--json']);
    expect(f.exitCode).toBe(0);
    expect(f.modules).toContain('cli/vms.js');
    for (const other of ['cli/run.js', 'cli/lifecycle.js', 'cli/vm-snapshot.js', 'cli/vm-devices.js', 'cli/conformance.js', 'cli/daemon.js']) expect(f.modules).not.toContain(other);
  });
});

describe('through the daemon', () => {
  it('pause and resume load neither pino, execa nor smol-toml (the daemon has the plugin, its config and the log); the executable loads only its fast path', async () => {
    const state = await tempDir('hvplug-cli-footprint-state-');
    const run = await tempDir('hvplug-cli-footprint-run-');
    const dirs = ['--state-dir', state, '--runtime-dir', run];
    const env = { HVPLUG_CONFIG: '' };
    const daemon = execa(process.execPath, [CLI, ...dirs, 'daemon'], { reject: false, env });
    try {
      let out = '';
      await new Promise<void>((resolve, reject) => {
        daemon.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('ready')) resolve();
        });
        void daemon.then((r) => reject(new Error(`the daemon exited before it was ready: ${r.stderr}`)));
      });
      const id = (await execa(process.execPath, [CLI, ...dirs, 'run', '--detach', '--plugin', 'example-proprietary'], { env })).stdout.trim();
      try {
        for (const command of ['pause', 'resume']) {
          const f = await footprint([...dirs, command, id]);
          expect(f.exitCode, command).toBe(0);
          expect(f.stdout, command).toBe(id);
          for (const lazy of ['pino', 'execa', 'smol-toml']) expect(f.packages, `${command}: ${lazy}`).not.toContain(lazy);
        }
        for (const command of ['pause', 'resume']) {
          // As the executable runs it: the fast path alone (src/cli/fast.ts), neither the CLI's bundle nor a package.
          const e = await footprint([...dirs, command, id], 'executable');
          expect({ command, exitCode: e.exitCode, stdout: e.stdout }).toEqual({ command, exitCode: 0, stdout: id });
          expect({ command, modules: e.modules, bundled: e.bundled, packages: e.packages }).toEqual({ command, modules: ['cli/main.js'], bundled: ['fast.js'], packages: [] });
        }
        // Without a daemon the fast path hands over to the full CLI, which runs its own host.
        const other = ['--state-dir', await tempDir('hvplug-cli-footprint-state-'), '--runtime-dir', run];
        const alone = await footprint([...other, 'pause', 'nope'], 'executable');
        expect(alone.exitCode).toBe(1);
        expect(alone.bundled).toContain('fast.js');
        expect(alone.bundled).toContain('hvplug.js');
      } finally {
        await execa(process.execPath, [CLI, ...dirs, 'stop', '--force', id], { env, reject: false });
      }
    } finally {
      daemon.kill('SIGTERM');
      await daemon;
    }
  }, 120_000);
});

describe('the executable', () => {
  it('runs the bundle: --version loads no package and no module of dist/src but the entry point', async () => {
    const f = await footprint(['--version'], 'executable');
    expect(f.exitCode).toBe(0);
    expect(f.stdout).toMatch(/^\d+\.\d+\.\d+/);
    expect(f.packages).toEqual([]);
    expect(f.modules).toEqual(['cli/main.js']);
    expect(f.bundled).toContain('hvplug.js');
    expect(f.bundled.filter((b) => /^chunks\/(zod|protocol|context|vms|run|conformance)-/.test(b))).toEqual([]);
  });

  it("runs the daemon from the bundle without zod classic: a long-running host, it parses with zod/mini as an embedder's host does (~2 MiB less)", async () => {
    const f = await footprint(['daemon'], 'executable', async (child) => {
      for await (const line of createInterface({ input: child.stdout! })) if (line.includes('hvplug daemon: ready')) break;
      child.kill('SIGTERM');
    });
    expect(f.exitCode).toBe(0);
    expect(f.bundled.some((b) => b.startsWith('chunks/daemon-'))).toBe(true);
    // esbuild keeps the names zod gives its classes: classic's are "ZodString"..., zod/mini's "ZodMiniString"...
    const classic = f.bundled.filter((b) => /["']ZodString["']/.test(readFileSync(join(dirname(CLI), '../../cli', b), 'utf8')));
    expect(classic).toEqual([]);
    expect(f.bundled.filter((b) => /ZodMiniString/.test(readFileSync(join(dirname(CLI), '../../cli', b), 'utf8')))).not.toEqual([]);
  }, 60_000);

  it("runs a command from the bundle, its own chunk loaded and the others' not", async () => {
    const f = await footprint(['ps', '--json'], 'executable');
    expect(f.exitCode).toBe(0);
    expect(f.stdout).toBe('[]');
    expect(f.modules).toEqual(['cli/main.js']);
    expect(f.bundled.some((b) => b.startsWith('chunks/vms-'))).toBe(true);
    expect(f.bundled.filter((b) => /^chunks\/(run|lifecycle|conformance|vm-snapshot|daemon)-/.test(b))).toEqual([]);
  });
});

describe('the command table', () => {
  it("names each command and gives its summary as the command's own module does", async () => {
    const { COMMANDS } = await import('../../src/cli/commands.js');
    for (const entry of COMMANDS) {
      const command = await entry.load();
      expect({ name: command.name, summary: command.summary }).toEqual({ name: entry.name, summary: entry.summary });
    }
  });
});
