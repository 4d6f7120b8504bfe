// Hotplug against a real guest: a virtio-blk disk on a PCIe root port appears in and disappears from
// the guest's /sys/block, and a hot-added vCPU comes online, each seen on the guest console.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { rootPortId } from '../../src/cmdline.js';
import { QmpCommandError } from '../../src/qmp.js';
import { SKIP_MESSAGE, bootTestGuest, findQemu, killAllStarted } from '../../test-support/guest.js';

const qemu = findQemu();
if (!qemu) console.warn(`skipping QEMU hotplug tests: ${SKIP_MESSAGE}`);

const BLOCK_WATCHER = `while true; do
  echo "BLOCK:[$(ls /sys/block | tr '\\n' ' ')]"
  [ -b /dev/vda ] && echo "DATA:[$(head -c 15 /dev/vda)]"
  sleep 0.3
done`;

// Newly added CPUs start offline unless udev onlines them; there is no udev here, so the guest does it.
const CPU_WATCHER = `while true; do
  for c in /sys/devices/system/cpu/cpu[1-9]*; do
    [ -f "$c/online" ] && [ "$(cat $c/online)" = 0 ] && echo 1 > "$c/online"
  done
  echo "CPUS:[$(cat /sys/devices/system/cpu/online)] NPROC:[$(nproc)]"
  sleep 0.3
done`;

// Hot-added memory blocks also start offline without udev (the Debian kernel leaves auto-onlining off).
const MEMORY_WATCHER = `while true; do
  for b in /sys/devices/system/memory/memory*; do
    [ "$(cat $b/online)" = 0 ] && echo online > "$b/state" 2>/dev/null
  done
  echo "MEMKB:[$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)]"
  sleep 0.3
done`;

function memKb(text: string): number[] {
  return [...text.matchAll(/MEMKB:\[(\d+)\]/g)].map((m) => Number(m[1]));
}

describe.skipIf(!qemu)('QEMU hotplug (q35, TCG)', () => {
  afterEach(killAllStarted);

  it('hot-plugs a virtio-blk disk onto a root port and unplugs it', async () => {
    const g = await bootTestGuest({ script: BLOCK_WATCHER });
    const image = join(g.runDir, 'disk.raw');
    execFileSync('qemu-img', ['create', '-q', '-f', 'raw', image, '8M']);
    const fd = Buffer.from('HVPLUG-DISK-OK!');
    writeFileSync(image, fd, { flag: 'r+' });
    await g.waitConsole(/BLOCK:\[\]/);

    await g.vm.qmp.execute('blockdev-add', { driver: 'raw', 'node-name': 'disk1', file: { driver: 'file', filename: image } });
    const from = await g.consoleOffset();
    await g.vm.qmp.execute('device_add', { driver: 'virtio-blk-pci', id: 'vdisk1', drive: 'disk1', bus: rootPortId(0) });
    const { text } = await g.waitConsole(/DATA:\[HVPLUG-DISK-OK!\]/, { from, timeoutMs: 30_000 });
    expect(text).toMatch(/BLOCK:\[vda \]/);

    // QEMU's refusals carry its error class and description.
    const refused = await g.vm.qmp
      .execute('device_add', { driver: 'virtio-blk-pci', id: 'vdisk2', drive: 'disk1', bus: 'no-such-port' })
      .then(() => undefined, (e: unknown) => e);
    expect(refused).toBeInstanceOf(QmpCommandError);
    expect(refused).toMatchObject({ command: 'device_add', errorClass: 'GenericError', desc: expect.stringMatching(/no-such-port/) });

    const deleted = g.vm.qmp.waitForEvent('DEVICE_DELETED', { predicate: (e) => e.data.device === 'vdisk1', timeoutMs: 30_000 });
    await g.vm.qmp.execute('device_del', { id: 'vdisk1' });
    // The guest acknowledges the unplug request; QEMU reports it once the device is really gone.
    await deleted;
    const afterUnplug = await g.consoleOffset();
    await g.waitConsole(/BLOCK:\[\]/, { from: afterUnplug, timeoutMs: 10_000 });
    await g.vm.qmp.execute('blockdev-del', { 'node-name': 'disk1' });
  }, 120_000);

  it('hot-adds a vCPU that comes online in the guest', async () => {
    const g = await bootTestGuest({ script: CPU_WATCHER, vcpus: { boot: 1, max: 2 } });
    await g.waitConsole(/CPUS:\[0\] NPROC:\[1\]/);
    const slots = await g.vm.qmp.execute('query-hotpluggable-cpus');
    expect(slots).toHaveLength(2);
    const free = slots.find((s) => s['qom-path'] === undefined);
    expect(free).toBeDefined();
    if (!free) return;
    const from = await g.consoleOffset();
    await g.vm.qmp.execute('device_add', { driver: free.type, id: 'vcpu1', ...free.props });
    await g.waitConsole(/CPUS:\[0-1\] NPROC:\[2\]/, { from, timeoutMs: 30_000 });
    const cpus = await g.vm.qmp.execute('query-cpus-fast');
    expect(cpus.map((c) => c['cpu-index']).sort()).toEqual([0, 1]);
    expect(new Set(cpus.map((c) => c['thread-id'])).size).toBe(2);
    // Every slot is taken now.
    expect((await g.vm.qmp.execute('query-hotpluggable-cpus')).every((s) => s['qom-path'] !== undefined)).toBe(true);
  }, 120_000);

  it('hot-adds memory as a pc-dimm that the guest brings online', async () => {
    const g = await bootTestGuest({ script: MEMORY_WATCHER, memory: { sizeMiB: 256, maxMiB: 1024, slots: 2 } });
    const { text: before } = await g.waitConsole(/MEMKB:\[\d+\]/);
    const baseKb = memKb(before)[0] ?? 0;
    await g.vm.qmp.execute('object-add', { 'qom-type': 'memory-backend-ram', id: 'mem1', size: 128 * 1024 * 1024 });
    await g.vm.qmp.execute('device_add', { driver: 'pc-dimm', id: 'dimm1', memdev: 'mem1' });
    const devices = await g.vm.qmp.execute('query-memory-devices');
    expect(devices).toHaveLength(1);
    expect(devices[0]?.data).toMatchObject({ id: 'dimm1', size: 128 * 1024 * 1024, memdev: '/objects/mem1' });
    const summary = await g.vm.qmp.execute('query-memory-size-summary');
    expect(summary['plugged-memory']).toBe(128 * 1024 * 1024);
    const from = await g.consoleOffset();
    const end = Date.now() + 30_000;
    let latest = baseKb;
    while (latest < baseKb + 120 * 1024 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 300));
      const { text } = await g.waitConsole(/MEMKB:\[\d+\]/, { from });
      latest = Math.max(...memKb(text));
    }
    expect(latest - baseKb).toBeGreaterThanOrEqual(120 * 1024);
    expect(latest - baseKb).toBeLessThanOrEqual(128 * 1024);
  }, 120_000);
});
