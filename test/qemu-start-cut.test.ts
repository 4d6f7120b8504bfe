import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PluginHost } from 'hvplug';
import { SKIP_MESSAGE, TEST_CACHE_DIR, findQemu } from '../plugins/qemu/test-support/guest.js';
import { alive, eventually, memoryLogger, pluginExecutable, processesUnder, removeTempDirs, tempDir } from './helpers.js';

/**
 * A plugin SIGKILLed while vm/start runs, after it spawned QEMU and before its answer (which carries QEMU's pid)
 * reached the host: the record has no pid. The restarted plugin must still find that QEMU (by the pidfile QEMU
 * writes in the VM's run directory), so that it is not left running unowned once the VM is deleted.
 */
const qemu = findQemu();
if (!qemu) console.warn(`skipping the cut-short vm/start test: ${SKIP_MESSAGE}`);
const runtimeDirs: string[] = [];

afterAll(async () => {
  for (const pid of processesUnder(runtimeDirs)) process.kill(pid, 'SIGKILL');
  await removeTempDirs();
});

describe.skipIf(!qemu)('QEMU: a plugin SIGKILLed during vm/start (TCG)', () => {
  it('leaves no QEMU behind: the restarted plugin finds it by its pidfile, and delete ends it', async () => {
    const dir = await tempDir('hvplug-qemu-startcut-');
    const runtimeDir = join(dir, 'run');
    runtimeDirs.push(runtimeDir);
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir,
      logger: memoryLogger().logger,
      plugins: [{ name: 'qemu', command: pluginExecutable('qemu') }],
      supervision: { backoffMs: 20, healthIntervalMs: 0 },
    });
    try {
      const hv = await host.hypervisor('qemu');
      const vm = await hv.createVm({
        vmId: 'cut-1',
        config: { memory: { sizeMiB: 256 }, plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR, guestScript: 'while true; do sleep 1; done' } },
      });
      const plugin = (await host.client('qemu'))!.pid;
      const restarted = new Promise<void>((resolve) => host.once('plugin-restarted', () => resolve()));
      const starting = vm.start().then(
        () => 'answered',
        (err: Error) => err.name,
      );
      // The moment QEMU exists, before QMP answers and `cont` runs: the plugin dies with the answer unsent.
      await eventually(() => processesUnder([join(runtimeDir, 'qemu', 'cut-1')]).length > 0, 30_000, 'QEMU to be spawned');
      process.kill(plugin, 'SIGKILL');
      const spawned = processesUnder([runtimeDir]);
      expect(spawned.length).toBe(1);
      expect(await starting).toBe('PluginExitedError');
      await restarted;
      // Either the start never got to run the guest, and its QEMU is ended (the VM stays created), or it did,
      // and the VM runs with that QEMU: never a QEMU the VM does not know.
      const info = await vm.info();
      if (info.status === 'created') expect(processesUnder([runtimeDir])).toEqual([]);
      else expect(info).toMatchObject({ status: 'running', pid: spawned[0] });

      // The re-attached VM owns that QEMU: deleting the VM ends it.
      await vm.delete();
      expect((await host.records()).records).toEqual([]);
      await eventually(() => spawned.every((p) => !alive(p)), 10_000, `QEMU ${spawned.join(',')} to end with its VM`);
      expect(processesUnder([runtimeDir])).toEqual([]);
    } finally {
      await host.close();
    }
  }, 120_000);
});
