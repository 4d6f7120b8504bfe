import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ensureCliBuilt, removeTempDirs, tempDir } from './helpers.js';

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
const cli = process.argv[1];
const exit = process.exit.bind(process);
// The CLI exits when done: what it loaded is reported first (messages from the hooks thread arrive asynchronously).
process.exit = (code) => {
  setTimeout(() => {
    const required = Object.keys(createRequire(import.meta.url).cache);
    const files = [...loaded, ...required].map((f) => decodeURIComponent(f));
    process.stderr.write('\\nLOADED ' + JSON.stringify(files) + '\\n');
    exit(code);
  }, 300);
};
process.argv = [process.argv[0], cli, ...process.argv.slice(2)];
await import(cli);
`;

interface Footprint {
  exitCode: number;
  stdout: string;
  packages: string[];
  /** The CLI's own modules, relative to dist/src. */
  modules: string[];
}

async function footprint(args: readonly string[]): Promise<Footprint> {
  const r = await execa(process.execPath, ['--no-warnings', '--input-type=module', '-e', PROBE, CLI, ...args], {
    reject: false,
    env: { HVPLUG_CONFIG: '', HVPLUG_STATE_DIR: dir, HVPLUG_RUNTIME_DIR: dir },
  });
  const line = r.stderr.split('\n').find((l) => l.startsWith('LOADED '));
  if (!line) throw new Error(`the probe reported nothing: ${r.stderr}`);
  const files = JSON.parse(line.slice('LOADED '.length)) as string[];
  const packages = new Set<string>();
  const modules = new Set<string>();
  for (const f of files) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f);
    if (m) packages.add(m[1]!);
    const own = /\/dist\/src\/(.+\.js)$/.exec(f);
    if (own && !m) modules.add(own[1]!);
  }
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, packages: [...packages].sort(), modules: [...modules].sort() };
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

describe('the command table', () => {
  it("names each command and gives its summary as the command's own module does", async () => {
    const { COMMANDS } = await import('../src/cli/commands.js');
    for (const entry of COMMANDS) {
      const command = await entry.load();
      expect({ name: command.name, summary: command.summary }).toEqual({ name: entry.name, summary: entry.summary });
    }
  });
});
