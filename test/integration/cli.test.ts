import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import jsonSchemaMetaModule from '@json-schema-tools/meta-schema';
import metaSchemaModule from '@open-rpc/meta-schema';
import ajvFormats from 'ajv-formats';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METHOD_NAMES, notifications } from 'hvplug/protocol';
import { alive, pluginExecutable, removeTempDirs, tempDir, CLI, ensureCliBuilt } from '../helpers.js';

/**
 * The CLI as users run it: the built dist/src/cli/main.js in a child process, with the real example
 * plugin, checked through its stdout, stderr, exit status and the process table.
 */
const PLUGIN = 'example-proprietary';

type Line = Record<string, unknown> & { type: string };



let stateDir: string;
let runtimeDir: string;

beforeAll(async () => {
  await ensureCliBuilt();
  stateDir = await tempDir('hvplug-cli-state-');
  runtimeDir = await tempDir('hvplug-cli-run-');
}, 120_000);

afterAll(removeTempDirs);

it('is an executable file, which is how npx hvplug runs it', async () => {
  // npm does not always mark a package's own bin executable (it did not after vitest touched node_modules).
  const r = await execa(CLI, ['--help'], { reject: false });
  expect(r.exitCode, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/^Usage: hvplug/m);
});

function cli(args: readonly string[]): ResultPromise<{ reject: false; timeout: number; env: Record<string, string> }> {
  return execa('node', [CLI, ...args], {
    reject: false,
    timeout: 60_000,
    // Nothing from the developer's own setup: a private state and runtime directory, no config file.
    env: { HVPLUG_STATE_DIR: stateDir, HVPLUG_RUNTIME_DIR: runtimeDir, HVPLUG_CONFIG: '' },
  });
}

function jsonLines(stdout: string): Line[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Line);
}

/** Resolves with the first JSON line of a running CLI that matches. */
function lineWhere(sub: ReturnType<typeof cli>, match: (l: Line) => boolean, timeoutMs = 20_000): Promise<Line> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`no matching line within ${timeoutMs} ms; got:\n${buffered}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString();
      for (const raw of buffered.split('\n').slice(0, -1)) {
        const l = JSON.parse(raw) as Line;
        if (match(l)) {
          clearTimeout(timer);
          sub.stdout.off('data', onData);
          resolve(l);
          return;
        }
      }
    };
    sub.stdout.on('data', onData);
  });
}

const guestPid = (lines: Line[]): number => {
  const info = lines.find((l) => l.type === 'vm')?.info as { pid?: number } | undefined;
  expect(info?.pid, 'the run reports the guest pid').toBeTypeOf('number');
  return info!.pid!;
};

/** Every VM the CLI created was deleted: the host's record is gone too. */
async function noVmRecords(): Promise<void> {
  const dir = join(stateDir, 'vms');
  const left = existsSync(dir) ? (await readdir(dir)).filter((f) => f.endsWith('.json')) : [];
  expect(left).toEqual([]);
}

describe('hvplug spec', () => {
  it('prints an OpenRPC document, valid against the meta-schema, with every method and notification', async () => {
    const r = await cli(['spec']);
    expect(r.exitCode).toBe(0);
    const doc = JSON.parse(r.stdout) as { openrpc: string; methods: { name: string }[] };
    const names = doc.methods.map((m) => m.name);
    for (const m of [...METHOD_NAMES, ...Object.keys(notifications)]) expect(names).toContain(m);

    const mod = metaSchemaModule as unknown as { openrpcDocument?: Record<string, unknown> };
    const jsMod = jsonSchemaMetaModule as unknown as { jsonSchema?: Record<string, unknown> };
    const jsonMeta = jsMod.jsonSchema ?? (jsMod as Record<string, unknown>);
    const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
    // CommonJS interop: the default import is the plugin function, which also carries itself as .default.
    ajvFormats.default(ajv);
    ajv.addSchema(jsonMeta);
    ajv.addSchema({ ...jsonMeta, $id: 'https://meta.json-schema.tools' });
    const validate = ajv.compile(mod.openrpcDocument ?? (mod as Record<string, unknown>));
    expect(validate(doc), JSON.stringify(validate.errors)).toBe(true);

    const compact = await cli(['spec', '--json']);
    expect(compact.stdout.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(compact.stdout)).toEqual(doc);
  });
});

describe('hvplug plugins', () => {
  it('lists the bundled example plugin, and plugins from a config file given before the command', async () => {
    const r = await cli(['plugins', '--json']);
    expect(r.exitCode).toBe(0);
    const list = JSON.parse(r.stdout) as { name: string; source: string; command: string }[];
    expect(list).toContainEqual(expect.objectContaining({ name: PLUGIN, source: 'builtin', command: pluginExecutable(PLUGIN) }));

    const dir = await tempDir();
    const toml = join(dir, 'plugins.toml');
    await writeFile(toml, `[plugins.acme]\ncommand = "${pluginExecutable(PLUGIN)}"\nisolation = "per-vm"\n`);
    const configured = await cli(['--config', toml, 'plugins', '--json']);
    expect(configured.exitCode).toBe(0);
    expect(JSON.parse(configured.stdout)).toContainEqual(expect.objectContaining({ name: 'acme', source: toml, isolation: 'per-vm' }));

    const human = await cli(['plugins']);
    expect(human.stdout).toMatch(/^NAME\s+SOURCE\s+COMMAND\s+PROBLEM$/m);
    expect(human.stdout).toContain(PLUGIN);
  });
});

describe('hvplug inspect', () => {
  it('starts the plugin and prints its handshake and capabilities', async () => {
    const r = await cli(['inspect', PLUGIN, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as {
      plugin: { name: string; version: string; vendor: string };
      protocolVersion: string;
      capabilities: { methods: string[]; devices: Record<string, { coldplug: boolean; hotplug: boolean; hotunplug: boolean }> };
      command: string;
    };
    expect(doc.plugin.name).toBe(PLUGIN);
    expect(doc.plugin.version).toMatch(/\d+\.\d+/);
    expect(doc.plugin.vendor.length).toBeGreaterThan(0);
    expect(doc.protocolVersion).toMatch(/^1\.\d+\.\d+$/);
    expect(doc.capabilities.methods).toEqual(expect.arrayContaining(['vm/create', 'vm/start', 'vm/stop', 'vm/delete', 'vm/console', 'vm/info']));
    expect(Object.keys(doc.capabilities.devices).length).toBeGreaterThan(0);
    expect(doc.command).toBe(pluginExecutable(PLUGIN));

    const human = await cli(['inspect', PLUGIN]);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^${PLUGIN} \\S+ by `));
    expect(human.stdout).toMatch(/^protocol\s+1\.\d+\.\d+$/m);
    expect(human.stdout).toMatch(/^ {2}TYPE\s+COLD\s+HOT\s+UNPLUG$/m);
  });
});

describe('hvplug run', () => {
  it('boots the VM, prints events and console lines, stops and deletes it at --timeout, exits 0 with no guest left', async () => {
    const r = await cli(['run', '--plugin', PLUGIN, '--timeout', '3', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = jsonLines(r.stdout);
    const events = lines.filter((l) => l.type === 'event').map((l) => (l.event as { type: string }).type);
    expect(events).toContain('running');
    const consoleLines = lines.filter((l) => l.type === 'console');
    // The guest writes a line every 100 ms for about 3 s.
    expect(consoleLines.length).toBeGreaterThanOrEqual(10);
    expect(lines.find((l) => l.type === 'ending')).toMatchObject({ reason: 'timeout', seconds: 3 });
    expect(lines.some((l) => l.type === 'deleted')).toBe(true);
    expect(lines.at(-1)).toMatchObject({ type: 'result', ok: true, reason: 'timeout' });
    expect(alive(guestPid(lines))).toBe(false);
    await noVmRecords();
  });

  it('shows people the same run as text, hvplug lines marked, console lines as the guest wrote them', async () => {
    const r = await cli(['run', '--plugin', PLUGIN, '--timeout', '1.5']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\[hvplug\] vm running$/m);
    expect(r.stdout).toMatch(/^\[hvplug\] vm deleted$/m);
    const guestLines = r.stdout.split('\n').filter((l) => l && !l.startsWith('[hvplug]'));
    expect(guestLines.length).toBeGreaterThanOrEqual(5);
    await noVmRecords();
  });

  it('stops cleanly on SIGINT once the VM is running', async () => {
    const sub = cli(['run', '--plugin', PLUGIN, '--json']);
    await lineWhere(sub, (l) => l.type === 'console');
    sub.kill('SIGINT');
    const r = await sub;
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = jsonLines(r.stdout);
    expect(lines.find((l) => l.type === 'ending')).toMatchObject({ reason: 'interrupted', signal: 'SIGINT' });
    expect(lines.some((l) => l.type === 'deleted')).toBe(true);
    expect(lines.at(-1)).toMatchObject({ type: 'result', ok: true });
    expect(alive(guestPid(lines))).toBe(false);
    await noVmRecords();
  });

  it('ends when the guest dies, cleans up, and exits 1 saying how the guest ended', async () => {
    const sub = cli(['run', '--plugin', PLUGIN, '--json']);
    const info = await lineWhere(sub, (l) => l.type === 'vm');
    await lineWhere(sub, (l) => l.type === 'console');
    process.kill((info.info as { pid: number }).pid, 'SIGKILL');
    const r = await sub;
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^hvplug: the guest exited \(signal SIGKILL/m);
    const lines = jsonLines(r.stdout);
    expect(lines.find((l) => l.type === 'ending')).toMatchObject({ reason: 'guest', event: 'exited' });
    expect(lines.at(-1)).toMatchObject({ type: 'result', ok: false });
    await noVmRecords();
  });

  it('takes the plugins config before the command and the VM config after it', async () => {
    const dir = await tempDir();
    const toml = join(dir, 'plugins.toml');
    await writeFile(toml, `[plugins.acme]\ncommand = "${pluginExecutable(PLUGIN)}"\n`);
    const vmJson = join(dir, 'vm.json');
    await writeFile(vmJson, JSON.stringify({ memory: { sizeMiB: 96 }, vcpus: { boot: 1, max: 4 } }));
    const r = await cli(['--config', toml, 'run', '--plugin', 'acme', '--vm-config', vmJson, '--vcpus', '2', '--timeout', '0.5', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = jsonLines(r.stdout);
    expect(lines[0]).toMatchObject({ type: 'plugin', plugin: 'acme', name: PLUGIN });
    expect(lines.find((l) => l.type === 'vm')?.info).toMatchObject({ memoryMiB: 96, vcpus: 2 });
    await noVmRecords();
  });
});

describe('hvplug conformance', () => {
  it('is dispatched to the suite, global options before the command included', async () => {
    const r = await cli(['--plugin-dir', stateDir, 'conformance', '--quiet', '--plugin', PLUGIN, '--only', 'handshake.initialize']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('1 passed, 0 failed');
    const help = await cli(['help', 'conformance']);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain('hvplug [global options] conformance [options] [-- <command> [args...]]');
  });
});

describe('errors', () => {
  const cases: [string[], RegExp][] = [
    [['run', '--vcpus', 'abc'], /^hvplug run: --vcpus: expected a whole number from 1 to 512, got "abc" \(see: hvplug run --help\)$/],
    [['run', '--memory'], /--memory needs a value/],
    [['run', '--timeout', '0'], /--timeout: expected a number of seconds/],
    [['run', '--kernel', '/nonexistent/vmlinuz'], /--kernel: cannot use \/nonexistent\/vmlinuz: no such file/],
    [['run', '--bogus'], /unknown option --bogus/],
    [['run', '--json=yes'], /--json takes no value/],
    [['run', '--plugin', 'Bad Name'], /--plugin: plugin names are lower-case/],
    [['run', '--cmdline', 'quiet'], /--cmdline needs --kernel/],
    [['inspect'], /missing <plugin>/],
    [['spec', 'extra'], /unexpected argument "extra"/],
    [['--log-level', 'loud', 'spec'], /--log-level: expected one of trace, debug/],
    [['frobnicate'], /^hvplug: unknown command "frobnicate"; commands: run, create, start, stop, kill, rm, pause, resume, save, restore, migrate, attach-device, detach-device, resize, info, stats, logs, events, console, ps, plugins, inspect, spec, conformance, daemon, completion, man, help \(see: hvplug --help\)$/],
  ];
  for (const [args, message] of cases) {
    it(`a bad command line (${args.join(' ') || 'nothing'}) is one line on stderr and exit 2`, async () => {
      const r = await cli(args);
      expect(r.exitCode).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    });
  }

  it('a runtime error is its message and exit 1, without a stack trace', async () => {
    const r = await cli(['inspect', 'no-such-plugin']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^hvplug: no plugin named no-such-plugin/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it('help is on stdout and exits 0, for hvplug and for each command', async () => {
    const general = await cli(['--help']);
    expect(general.exitCode).toBe(0);
    for (const c of ['run', 'plugins', 'inspect', 'spec']) expect(general.stdout).toContain(`  ${c} `);
    const run = await cli(['run', '--help']);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(/^Usage: hvplug \[global options\] run \[options\]/);
    for (const flag of ['--plugin', '--kernel', '--initrd', '--cmdline', '--vcpus', '--memory', '--machine', '--config', '--timeout', '--json']) {
      expect(run.stdout).toContain(flag);
    }
    expect((await cli(['help', 'inspect'])).stdout).toMatch(/^Usage: hvplug \[global options\] inspect <plugin>/);
  });
});
