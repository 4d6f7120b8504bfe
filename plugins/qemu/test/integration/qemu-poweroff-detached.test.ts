import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PluginHost, type VmEvent } from 'hvplug';
import { SKIP_MESSAGE, TEST_CACHE_DIR, findQemu } from '../../test-support/guest.js';
import { alive, eventually, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../../../../test/helpers.js';

const qemu = findQemu();
if (!qemu) console.warn(`skipping the detached power-off test: ${SKIP_MESSAGE}`);
const pids = new Set<number>();

afterAll(async () => {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await removeTempDirs();
});

const hostOn = (dir: string) =>
  new PluginHost({
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logger: memoryLogger().logger,
    plugins: [{ name: 'qemu', command: pluginExecutable('qemu') }],
    supervision: { backoffMs: 50, healthIntervalMs: 0 },
  });

describe.skipIf(!qemu)('a QEMU guest that powers off while no plugin watches it (TCG)', () => {
  it('is found stopped, with an exited event, by the next host: not lost', async () => {
    const dir = await tempDir('hvplug-qemu-detached-');
    const first = hostOn(dir);
    const hv = await first.hypervisor('qemu');
    const vm = await hv.createVm({
      config: { memory: { sizeMiB: 256 }, plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR, guestScript: 'sleep 2' } },
    });
    await vm.start();
    const { pid } = await vm.info();
    if (pid) pids.add(pid);
    const consolePath = (await vm.console()).path;
    // As `hvplug run --detach` leaves it: the plugin shut down, the guest running on its own.
    await first.close();

    // The guest's kernel says so as it powers off; under TCG on a busy machine boot alone can take a minute.
    await eventually(() => /reboot: Power down/.test(readFileSync(consolePath, 'utf8')), 150_000, 'the guest to power off');

    const second = hostOn(dir);
    const events: VmEvent[] = [];
    const hv2 = await second.hypervisor('qemu');
    hv2.onEvent((e) => events.push(e));
    const report = await second.reattach();
    expect(report.lost).toEqual([]);
    const again = await second.vm(vm.id);
    expect(again?.status).toBe('stopped');
    const { records } = await second.records();
    expect(records.find((r) => r.vmId === vm.id)?.status).toBe('stopped');
    await eventually(() => events.some((e) => e.type === 'exited' && e.vmId === vm.id), 10_000, 'an exited event');
    const exited = events.find((e) => e.type === 'exited');
    expect(exited).toMatchObject({ type: 'exited', reason: expect.stringMatching(/guest/) });
    // Nothing of it is left running.
    if (pid) await eventually(() => !alive(pid), 10_000, `QEMU ${pid} to end`);
    await again?.delete();
    await second.close();
  }, 240_000);
});
