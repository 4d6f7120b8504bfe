import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PluginHost } from 'hvplug';
import { alive, eventually, memoryLogger, pluginExecutable, processesUnder, removeTempDirs, tempDir } from '../../../../test/helpers.js';

/**
 * A guest no plugin process knows about, for a VM that has one: what a vm/start cut short between the spawn
 * and the guest record can leave (two plugin processes once raced to start one VM). It carries the title and
 * agent socket path a real guest of that VM shows in /proc.
 */
const GUEST_TITLE = 'hvplug-example-guest';
const strays: number[] = [];

function strayGuest(vmId: string, agentPath: string): number {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', GUEST_TITLE, vmId, agentPath], { detached: true, stdio: 'ignore' });
  child.unref();
  strays.push(child.pid ?? 0);
  return child.pid ?? 0;
}

afterAll(async () => {
  for (const pid of strays) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await removeTempDirs();
});

async function withHost<T>(run: (host: PluginHost) => Promise<T>): Promise<T> {
  const dir = await tempDir('hvplug-strays-');
  const host = new PluginHost({
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logger: memoryLogger().logger,
    plugins: [{ name: 'example-proprietary', command: pluginExecutable('example-proprietary') }],
  });
  try {
    return await run(host);
  } finally {
    await host.close();
  }
}

describe('example plugin: a guest of a VM that no plugin process knows', () => {
  it('is ended by vm/delete with the VM', () =>
    withHost(async (host) => {
      const hv = await host.hypervisor('example-proprietary');
      const vm = await hv.createVm({ config: {} });
      await vm.start();
      const path = (await vm.agentSocket()).path ?? '';
      expect(path).not.toBe('');
      const stray = strayGuest(vm.id, path);
      await eventually(() => alive(stray), 5_000, 'the stray guest to run');
      await vm.delete();
      await eventually(() => !alive(stray), 5_000, `stray guest ${stray} of the deleted VM to end`);
    }));

  it('is ended by vm/start before it spawns the guest, so a VM never has two', () =>
    withHost(async (host) => {
      const hv = await host.hypervisor('example-proprietary');
      const vm = await hv.createVm({ config: {} });
      await vm.start();
      const path = (await vm.agentSocket()).path ?? '';
      expect(path).not.toBe('');
      await vm.stop();
      const stray = strayGuest(vm.id, path);
      await eventually(() => alive(stray), 5_000, 'the stray guest to run');
      await vm.start();
      expect(alive(stray), `stray guest ${stray} still runs beside the new one`).toBe(false);
      await vm.delete();
    }));
});

describe('example plugin: the state machine', () => {
  it('a call the table forbids is refused by the SDK from the plugin\'s vmStatus, before the handler', () =>
    withHost(async (host) => {
      const hv = await host.hypervisor('example-proprietary');
      const vm = await hv.createVm({ config: {} });
      await expect(vm.pause()).rejects.toThrow(/^vm\/pause: VM \S+ is created; this needs running$/);
      await vm.start();
      await expect(vm.resume()).rejects.toThrow(/^vm\/resume: VM \S+ is running; this needs paused$/);
      await vm.delete();
    }));
});

describe('a plugin SIGKILLed during vm/restore, its host alive', () => {
  it('leaves neither a record nor a guest: the restarted process is asked to delete what the restore began', async () => {
    const dir = await tempDir('hvplug-restore-cut-');
    const runtimeDir = join(dir, 'run');
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir,
      logger: memoryLogger().logger,
      plugins: [{ name: 'example-proprietary', command: pluginExecutable('example-proprietary') }],
      supervision: { backoffMs: 20, healthIntervalMs: 0 },
    });
    try {
      const hv = await host.hypervisor('example-proprietary');
      const source = await hv.createVm({ config: { vcpus: { boot: 1, max: 2 }, plugin: { tickMs: 20 } } });
      await source.start();
      await source.pause();
      const snap = join(dir, 'vm.snap');
      await source.save({ path: snap });
      await source.delete();

      // The restore answers soon after its guest appears; a kill that comes too late proves nothing, so the
      // scenario is tried again (a few times at most) until the plugin dies before answering.
      let cut = 0;
      for (let attempt = 1; attempt <= 5 && cut === 0; attempt++) {
        const vmId = `restore-cut-${attempt}`;
        const vmDir = join(runtimeDir, 'example-proprietary', vmId);
        const restarted = new Promise((r) => host.once('plugin-restarted', r));
        const restoring = hv.restoreVm({ vmId, path: snap, config: { vcpus: { boot: 1, max: 2 }, plugin: { tickMs: 20 } } }).then(
          () => 'answered',
          (err: Error) => err.name,
        );
        // The moment the restore's guest exists it is frozen (so it cannot report booted) and its plugin dies.
        await eventually(() => processesUnder([vmDir]).length > 0, 10_000, 'the restored guest');
        for (const pid of processesUnder([vmDir])) process.kill(pid, 'SIGSTOP');
        process.kill((await host.client('example-proprietary'))!.pid, 'SIGKILL');
        if ((await restoring) === 'answered') {
          await (await host.vm(vmId))?.delete();
          continue;
        }
        cut++;
        await restarted;
        await eventually(() => processesUnder([vmDir]).length === 0, 10_000, `no guest of ${vmId} left`);
        await eventually(async () => !(await host.records()).records.some((r) => r.vmId === vmId), 10_000, `no record of ${vmId} left`);
      }
      expect(cut, 'a restore cut short by the death of its plugin').toBe(1);
    } finally {
      await host.close();
    }
  });
});
