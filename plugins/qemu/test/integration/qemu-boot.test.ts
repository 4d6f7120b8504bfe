// Boots the host's Debian kernel with hvplug's busybox initramfs under TCG through startQemu and the
// QMP client, and checks from the guest console that it runs, pauses and resumes.
import { proc } from 'hvplug/plugin-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { GUEST_EXIT_MARKER, GUEST_READY_MARKER } from '../../src/initramfs.js';
import { eventData } from '../../src/qmp-schema.js';
import { quitQemu, waitForExit } from '../../src/process.js';
import { SKIP_MESSAGE, bootTestGuest, findQemu, killAllStarted } from '../../test-support/guest.js';

const qemu = findQemu();
if (!qemu) console.warn(`skipping QEMU boot tests: ${SKIP_MESSAGE}`);

/** Prints "TICK <n>" every 0.2 s, for a long time. */
const TICKER = 'i=0; while [ $i -lt 100000 ]; do echo "TICK $i"; i=$((i+1)); sleep 0.2; done';

function lastTick(text: string): number {
  const all = [...text.matchAll(/TICK (\d+)/g)];
  const last = all.at(-1);
  return last ? Number(last[1]) : -1;
}

describe.skipIf(!qemu)('QEMU guest boot (TCG)', () => {
  afterEach(killAllStarted);

  it('boots to the ready marker, runs the script and powers off', async () => {
    const g = await bootTestGuest({ script: 'echo "SCRIPT-RAN $(uname -r) cpus=$(nproc)"; ls /sys/bus/virtio/drivers' });
    expect(proc.isAlive(g.vm.pid)).toBe(true);
    const shutdown = g.vm.qmp.waitForEvent('SHUTDOWN', { timeoutMs: 60_000 });
    const { text } = await g.waitConsole(new RegExp(`${GUEST_EXIT_MARKER} 0`));
    expect(text).toContain(GUEST_READY_MARKER);
    expect(text).toMatch(/SCRIPT-RAN 6\.\d+\.\d+-\S+ cpus=1/);
    // The virtio drivers the initramfs loaded registered with the virtio bus.
    expect(text).toMatch(/virtio_blk/);
    expect(text).toMatch(/virtio_net/);
    expect(text).not.toContain('insmod');
    const ev = await shutdown;
    expect(eventData(ev, 'SHUTDOWN')).toEqual({ guest: true, reason: 'guest-shutdown' });
    expect(await g.vm.exited).toEqual({ code: 0, signal: null });
  }, 90_000);

  it('boots paused with -S and starts on cont', async () => {
    const g = await bootTestGuest({ script: TICKER, paused: true });
    expect(await g.vm.qmp.execute('query-status')).toMatchObject({ status: 'prelaunch', running: false });
    await new Promise((r) => setTimeout(r, 1500));
    // No vCPU ran: not even the firmware wrote to the console.
    expect(await g.consoleOffset()).toBe(0);
    const resumed = g.vm.qmp.waitForEvent('RESUME', { timeoutMs: 5_000 });
    await g.vm.qmp.execute('cont');
    await resumed;
    expect(await g.vm.qmp.execute('query-status')).toMatchObject({ status: 'running', running: true });
    await g.waitConsole(/TICK 2\b/);
  }, 90_000);

  it('stop makes no console progress, cont resumes it', async () => {
    const g = await bootTestGuest({ script: TICKER });
    await g.waitConsole(/TICK 3\b/);
    const stopped = g.vm.qmp.waitForEvent('STOP', { timeoutMs: 5_000 });
    await g.vm.qmp.execute('stop');
    await stopped;
    expect(await g.vm.qmp.execute('query-status')).toMatchObject({ status: 'paused', running: false });
    const atStop = await g.consoleOffset();
    await new Promise((r) => setTimeout(r, 2000));
    expect(await g.consoleOffset()).toBe(atStop);
    const { text: before } = await g.waitConsole(/TICK \d+/);
    const frozenAt = lastTick(before);

    await g.vm.qmp.execute('cont');
    const { text } = await g.waitConsole(new RegExp(`TICK ${frozenAt + 3}\\b`), { from: atStop, timeoutMs: 20_000 });
    // It continues from where it was, without restarting.
    expect(text).toMatch(new RegExp(`TICK ${frozenAt + 1}\\b`));
    expect(text).not.toContain(GUEST_READY_MARKER);
  }, 90_000);

  it('quit over QMP ends QEMU and closes the QMP connection', async () => {
    const g = await bootTestGuest({ script: TICKER });
    await g.waitConsole(/TICK 0\b/);
    const pending = expect(g.vm.qmp.waitForEvent('NEVER-SENT')).rejects.toThrow(/closed/);
    await quitQemu(g.vm);
    expect(await waitForExit(g.vm.pid, 1_000)).toBe(true);
    await pending;
    await expect(g.vm.qmp.execute('query-status')).rejects.toThrow(/closed/);
  }, 90_000);
});

describe.skipIf(!qemu)('QEMU microvm (TCG)', () => {
  afterEach(killAllStarted);

  it('boots microvm and finds a cold-plugged virtio-mmio disk', async () => {
    const g = await bootTestGuest({
      machine: 'microvm',
      script: 'echo "BLOCK:[$(ls /sys/block | tr "\\n" " ")]"; cat /proc/cmdline',
      coldPlug: {
        blockdevs: [{ driver: 'raw', 'node-name': 'd0', 'read-only': true, file: { driver: 'file', filename: '/bin/busybox' } }],
        devices: [{ driver: 'virtio-blk-device', id: 'vda', drive: 'd0' }],
      },
    });
    // microvm has no PCI bus at all.
    expect(await g.vm.qmp.execute('query-pci')).toEqual([]);
    const { text } = await g.waitConsole(/HVPLUG-GUEST-EXIT 0/);
    expect(text).toContain(GUEST_READY_MARKER);
    expect(text).toMatch(/BLOCK:\[vda \]/);
    expect(await g.vm.exited).toEqual({ code: 0, signal: null });
  }, 90_000);
});
