import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PluginHost, type ShimVm } from 'hvplug';
import { runConformance, type Report } from 'hvplug/conformance';
import { openRpcDocument } from 'hvplug/protocol';
import { root } from '../../scripts/bundle.mjs';
import { alive, eventually, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

/**
 * A plugin in another language, written from docs/plugin-authors.md and the OpenRPC document alone: the conformance
 * suite passes it, and a PluginHost runs real guests through it and re-attaches them after the plugin is SIGKILLed.
 */
const PLUGIN = join(root, 'test/fixtures/plugins/python/hvplug_plugin_py.py');
const PYTHON = spawnSync('python3', ['--version']).status === 0;
if (!PYTHON) console.warn('conformance-python: skipped, python3 is not on PATH (CI installs it)');

/** The methods the plugin advertises: everything about one VM's lifecycle, no devices, snapshots, images or migration. */
const ADVERTISED = [
  'vm/create', 'vm/recover', 'vm/start', 'vm/stop', 'vm/pause', 'vm/resume', 'vm/wait', 'vm/delete',
  'vm/check', 'vm/disconnect', 'vm/info', 'vm/config', 'vm/console', 'vm/pids', 'vm/stats',
];

/** The plugin's command line: the OpenRPC document it validates params against, as `hvplug spec` prints it. */
async function pluginArgs(): Promise<string[]> {
  const spec = join(await tempDir(), 'hvplug.openrpc.json');
  await writeFile(spec, JSON.stringify(openRpcDocument()));
  return ['--spec', spec];
}

/** The process state letter of /proc/<pid>/stat (R, S, T...). */
function procState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
}

const guests: number[] = [];
afterAll(async () => {
  for (const pid of guests) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await removeTempDirs();
});

describe.skipIf(!PYTHON)('a plugin in Python written from the published contract alone', () => {
  let report: Report;
  beforeAll(async () => {
    report = await runConformance({ command: PLUGIN, args: await pluginArgs(), powerOffConfig: { plugin: { guestSeconds: 1 } } });
  }, 60_000);

  it('passes the conformance suite: nothing fails, and only what it does not advertise is skipped', () => {
    const failed = report.checks.filter((c) => c.status === 'fail').map((c) => `${c.id}: ${c.message ?? ''}`);
    expect(failed).toEqual([]);
    expect(report.ok).toBe(true);
    expect([...(report.capabilities?.methods ?? [])].sort()).toEqual([...ADVERTISED].sort());
    const byId = new Map(report.checks.map((c) => [c.id, c.status]));
    for (const m of ADVERTISED) {
      expect(byId.get(`method.${m}.valid`), m).toBe('pass');
      expect(byId.get(`method.${m}.invalid`), m).toBe('pass');
    }
    for (const id of ['recover.reattach', 'recover.vmm-gone', 'events.vmm-exit', 'events.guest-poweroff', 'health.ping-during-stop',
      'cancel.reaches-handler', 'process.exit-on-eof', 'wire.plugin-to-host', 'cleanup.no-leftovers']) {
      expect(byId.get(id), id).toBe('pass');
    }
    for (const c of report.checks.filter((x) => x.status === 'skipped')) expect(c.reason, c.id).toMatch(/not advertised|power-off/);
  });

  describe('through a PluginHost', () => {
    let host: PluginHost | undefined;
    afterEach(async () => {
      await host?.close();
      host = undefined;
    });

    it('runs a real guest, pauses and resumes it, and re-attaches it after the plugin is SIGKILLed', async () => {
      const dir = await tempDir();
      host = new PluginHost({
        stateDir: join(dir, 'state'),
        runtimeDir: join(dir, 'run'),
        logger: memoryLogger().logger,
        plugins: [{ name: 'py', command: PLUGIN, args: await pluginArgs() }],
        supervision: { backoffMs: 20, healthIntervalMs: 0 },
      });
      const hv = await host.hypervisor('py');
      const vm: ShimVm = await hv.createVm({ config: { vcpus: { boot: 2 }, memory: { sizeMiB: 128 } } });
      const events: string[] = [];
      vm.on('event', (e: { type: string }) => events.push(e.type));
      await vm.start();
      const info = await vm.info();
      expect(info).toMatchObject({ status: 'running', vcpus: 2, memoryMiB: 128 });
      const guest = info.pid!;
      guests.push(guest);
      expect(readFileSync(`/proc/${guest}/cmdline`, 'utf8').split('\0')[0]).toMatch(/sleep$/);
      expect((await vm.pids()).pids).toEqual([guest]);

      await vm.pause();
      expect(procState(guest)).toBe('T');
      await vm.resume();
      expect(procState(guest)).not.toBe('T');

      const first = (await host.client('py'))!.pid;
      const restarted = new Promise((r) => host!.once('plugin-restarted', r));
      process.kill(first, 'SIGKILL');
      await restarted;
      await eventually(() => events.includes('recovered'), 10_000, 'the recovered event');
      const second = (await host.client('py'))!.pid;
      expect(second).not.toBe(first);
      expect(alive(first)).toBe(false);
      // The same guest, never restarted, driven by the new plugin process.
      expect(alive(guest)).toBe(true);
      expect(vm.status).toBe('running');
      expect((await vm.info()).pid).toBe(guest);
      await vm.pause();
      expect(procState(guest)).toBe('T');
      await vm.resume();

      // A guest that dies now is seen by the new process: exited, then crashed.
      process.kill(guest, 'SIGKILL');
      await expect(vm.wait()).resolves.toMatchObject({ status: 'crashed' });
      expect(events.filter((t) => t !== 'state').slice(-2)).toEqual(['exited', 'crashed']);
      await vm.delete();
      expect((await host.store.list()).records).toHaveLength(0);
      await host.close();
      host = undefined;
      expect(alive(second)).toBe(false);
    }, 30_000);
  });
});
