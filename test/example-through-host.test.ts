import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PluginHost } from 'hvplug';
import { alive, eventually, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from './helpers.js';

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
