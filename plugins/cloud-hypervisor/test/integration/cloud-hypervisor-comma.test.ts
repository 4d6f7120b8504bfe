// A runtime directory with a comma in it: Cloud Hypervisor reads --api-socket and --event-monitor with its
// option_parser (option_parser/src/lib.rs), which splits "k=v,k=v" at commas outside double quotes and
// brackets, dropping the quotes. The plugin quotes the paths; the double parses them as the real binary does.
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { PluginHost, type VmEvent } from 'hvplug';
import { parseArgs } from '../../double/cli.js';
import { optionPathProblem, optionPathValue } from '../../src/paths.js';
import { chooseTarget } from '../../test-support/vmm-process.js';
import { root } from '../../../../scripts/bundle.mjs';
import { memoryLogger, pluginExecutable, processesUnder, removeTempDirs, tempDir } from '../../../../test/helpers.js';

vi.setConfig({ testTimeout: 90_000, hookTimeout: 60_000 });
const PLUGIN = 'cloud-hypervisor';
const choice = chooseTarget();
const realKernel = process.env.HVPLUG_CH_KERNEL;
const canBoot = choice.kind === 'double' || realKernel !== undefined;
const DOUBLE_BUNDLE = join(root, 'plugins/cloud-hypervisor/dist/cloud-hypervisor-double.mjs');

let binDir: string;
let binary: string;
const hosts: PluginHost[] = [];
const watched: string[] = [];

beforeAll(async () => {
  console.info(`[cloud-hypervisor comma] against ${choice.kind === 'real' ? 'the REAL binary' : 'the contract double'} (${choice.reason})`);
  binDir = await mkdtemp(join(tmpdir(), 'ch-bin-'));
  if (choice.kind === 'real' && choice.binary) {
    binary = choice.binary;
  } else {
    binary = join(binDir, 'cloud-hypervisor');
    await writeFile(binary, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(DOUBLE_BUNDLE)} "$@"\n`);
    await chmod(binary, 0o755);
  }
});

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  const left = processesUnder(watched.splice(0));
  for (const pid of left) process.kill(pid, 'SIGKILL');
  await removeTempDirs();
  expect(left, 'VMM processes left running by the test').toEqual([]);
});

afterAll(async () => {
  await rm(binDir, { recursive: true, force: true });
});

describe('the double parses --api-socket and --event-monitor as option_parser does', () => {
  const run = (args: string[]): ReturnType<typeof parseArgs> => parseArgs(args, 'cloud-hypervisor v0');

  it('a quoted value keeps its commas, the quotes dropped', () => {
    const r = run(['--api-socket', 'path="/run/a,b/api.sock"', '--event-monitor', 'path="/run/a,b/events.json"']);
    expect(r).toMatchObject({ kind: 'run', options: { apiSocket: { path: '/run/a,b/api.sock' }, eventMonitor: { path: '/run/a,b/events.json' } } });
  });

  it('an unquoted comma splits: --api-socket keeps the path before it (the parse error is ignored), --event-monitor fails', () => {
    expect(run(['--api-socket', 'path=/run/a,b/api.sock'])).toMatchObject({ kind: 'run', options: { apiSocket: { path: '/run/a' } } });
    expect(run(['--api-socket', '/x', '--event-monitor', 'path=/run/a,b/events.json'])).toMatchObject({ kind: 'print', code: 1 });
  });

  it('a bare path without a comma is still the socket path', () => {
    expect(run(['--api-socket', '/run/api.sock'])).toMatchObject({ kind: 'run', options: { apiSocket: { path: '/run/api.sock' } } });
  });
});

describe('the plugin quotes the paths it gives Cloud Hypervisor', () => {
  it('quotes a path, and names what option_parser cannot carry', () => {
    expect(optionPathValue('/run/a,b/api.sock')).toBe('path="/run/a,b/api.sock"');
    expect(optionPathProblem('/run/a,b/api.sock')).toBeUndefined();
    expect(optionPathProblem('/run/a"b/api.sock')).toMatch(/"/);
    expect(optionPathProblem('/run/a[b/api.sock')).toMatch(/\[/);
  });

  it.skipIf(!canBoot)('a VM under a runtime directory with commas: created, started, its events read, deleted', async () => {
    const dir = await tempDir('hvplug-test-a,b-');
    watched.push(dir);
    const runtimeDir = join(dir, 'run,time');
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir,
      logger: memoryLogger().logger,
      plugins: [{ name: PLUGIN, command: pluginExecutable(PLUGIN), env: { HVPLUG_CH_BINARY: binary } }],
      supervision: { backoffMs: 20, healthIntervalMs: 0 },
    });
    hosts.push(host);
    let kernel = realKernel ?? '';
    if (choice.kind === 'double') {
      kernel = join(dir, 'vmlinux');
      await writeFile(kernel, 'not a kernel: the double only opens it');
    }
    const hv = await host.hypervisor(PLUGIN);
    const vm = await hv.createVm({ config: { kernel: { path: kernel, cmdline: 'console=ttyS0' }, memory: { sizeMiB: 256 } } });
    const events: VmEvent[] = [];
    vm.on('event', (e) => events.push(e));
    expect((await vm.info()).pid).toBeGreaterThan(0);
    expect((await vm.start()).status).toBe('running');
    await vm.stop({ graceMs: 1_000 });
    await vm.delete();
    expect(events.map((e) => e.type)).toContain('running');
  });
});
