import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { PluginHost } from 'hvplug';
import { root } from '../../../../scripts/bundle.mjs';
import { SKIP_MESSAGE, TEST_CACHE_DIR, findQemu } from '../../test-support/guest.js';
import { alive, ensureCliBuilt, eventually, memoryLogger, pluginExecutable, processesUnder, removeTempDirs, tempDir } from '../../../../test/helpers.js';

const CORE = new URL('../../../../dist/src/core/index.js', import.meta.url).href;
const STEP = join(root, 'test/fixtures/hosts/step.mjs');
const PLUGIN = { name: 'qemu', command: pluginExecutable('qemu') };
const config = { memory: { sizeMiB: 256 }, plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR, guestScript: 'while true; do sleep 1; done' } };
const hostOn = (dir: string): PluginHost =>
  new PluginHost({
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logger: memoryLogger().logger,
    plugins: [PLUGIN],
    supervision: { backoffMs: 20, healthIntervalMs: 0 },
  });

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
    const host = hostOn(dir);
    try {
      const hv = await host.hypervisor('qemu');
      const vm = await hv.createVm({
        vmId: 'cut-1',
        config,
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

  it('a host SIGKILLed during vm/restore, after QEMU was spawned: the next host drops the record and ends that QEMU', async () => {
    await ensureCliBuilt();
    const dir = await tempDir('hvplug-qemu-restorecut-');
    const runtimeDir = join(dir, 'run');
    runtimeDirs.push(runtimeDir);
    const snapshot = join(dir, 'snap.bin');
    const first = hostOn(dir);
    try {
      const vm = await (await first.hypervisor('qemu')).createVm({ vmId: 'source', config });
      await vm.start();
      await vm.pause();
      await vm.save({ path: snapshot }, { timeoutMs: 120_000 });
      await vm.delete();
    } finally {
      await first.close();
    }

    // The record of the restored VM is written before vm/restore is sent; the host dies once QEMU exists.
    const child = execa('node', [STEP, JSON.stringify({ core: CORE, stateDir: join(dir, 'state'), runtimeDir, plugin: PLUGIN, vmId: 'restored', op: 'restore', params: { config, path: snapshot } })], {
      reject: false,
    });
    await eventually(() => processesUnder([join(runtimeDir, 'qemu', 'restored')]).length > 0, 60_000, 'the restore to spawn QEMU');
    child.kill('SIGKILL');
    await child;
    expect(processesUnder([runtimeDir]).length).toBe(1);

    const second = hostOn(dir);
    try {
      const report = await second.reattach();
      expect(report.lost).toEqual([]);
      expect(report.abandoned.map((a) => a.vmId)).toEqual(['restored']);
      expect((await second.records()).records).toEqual([]);
      await eventually(() => processesUnder([runtimeDir]).length === 0, 10_000, 'the QEMU of the restore cut short to end');
    } finally {
      await second.close();
    }
  }, 180_000);
});
