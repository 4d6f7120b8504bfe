// The QEMU plugin end to end: host → shim → bundled plugin → qemu-system-x86_64 (TCG), with every
// behaviour checked from inside the guest through its console. Boots are grouped (the machine has two
// cores): one q35 guest carries hotplug, pause, save; its snapshot is restored into a second VM that then
// survives a SIGKILL of the plugin; a short microvm boot checks that hotplug is refused there. Others check
// unplug during boot, a tap NIC carrying the guest's packets, and graceful and paused stops.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidConfigError, InvalidStateError, NotSupportedError, PluginHost, TimeoutError, VmmFailureError, type ShimHypervisor, type ShimVm, type VmEvent } from 'hvplug';
import { SKIP_MESSAGE, TEST_CACHE_DIR, findQemu } from '../../test-support/guest.js';
import { alive, eventually, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../../../../test/helpers.js';

const qemu = findQemu();
if (!qemu) console.warn(`skipping QEMU plugin tests: ${SKIP_MESSAGE}`);

// Onlines hot-added CPUs and memory itself (no udev in the guest) and prints a counter with what it sees.
const WATCHER = `n=0
while true; do
  for c in /sys/devices/system/cpu/cpu[1-9]*; do
    [ -f "$c/online" ] && [ "$(cat $c/online)" = 0 ] && echo 1 > "$c/online"
  done
  for b in /sys/devices/system/memory/memory*; do
    [ "$(cat $b/online)" = 0 ] && echo online > "$b/state" 2>/dev/null
  done
  n=$((n+1))
  echo "TICK:$n BLOCK:[$(ls /sys/block | tr '\\n' ' ')] CPUS:[$(cat /sys/devices/system/cpu/online)] NET:[$(ls /sys/class/net | tr '\\n' ' ')] MEMKB:[$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)]"
  sleep 0.3
done`;

// Host side of the tap test: a tap interface needs CAP_NET_ADMIN (CI runs as root) and iproute2.
const TAP_SKIP = process.getuid?.() !== 0 ? 'not root' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun' : !existsSync('/usr/sbin/ip') && !existsSync('/sbin/ip') ? 'no ip (iproute2)' : undefined;
const TAP_NET = { host: '10.253.231.1', guest: '10.253.231.2', prefix: 24 };
const TAP_MAC = '52:54:00:aa:bb:01';

// Once a NIC appears, gives it an address and pings the host end of the tap; prints the interfaces it sees.
const TAP_GUEST = `while true; do
  if [ -e /sys/class/net/eth0 ] && [ -z "$up" ]; then
    up=1
    echo "MAC:[$(cat /sys/class/net/eth0/address)]"
    ip addr add ${TAP_NET.guest}/${TAP_NET.prefix} dev eth0; ip link set eth0 up
    for i in 1 2 3 4 5 6; do ping -c 1 -W 2 ${TAP_NET.host} >/dev/null 2>&1 && { echo PING-OK; break; }; done
  fi
  echo "NET:[$(ls /sys/class/net | tr '\n' ' ')]"
  sleep 0.3
done`;

const memKbs = (text: string): number[] => [...text.matchAll(/MEMKB:\[(\d+)\]/g)].map((m) => Number(m[1]));
const ticks = (text: string): number[] => [...text.matchAll(/TICK:(\d+) /g)].map((m) => Number(m[1]));
const consoleText = (path: string, from = 0): string => {
  try {
    return readFileSync(path).subarray(from).toString('utf8');
  } catch {
    return '';
  }
};
const consoleSize = (path: string): number => Buffer.byteLength(consoleText(path));

async function waitConsole(path: string, pattern: RegExp, from = 0, timeoutMs = 60_000): Promise<string> {
  let text = '';
  await eventually(
    () => {
      text = consoleText(path, from);
      return pattern.test(text);
    },
    timeoutMs,
    `${pattern} on the guest console (${path})`,
  ).catch((e: Error) => {
    throw new Error(`${e.message}; console tail: ${text.slice(-600)}`);
  });
  return text;
}

describe.skipIf(!qemu)('QEMU plugin through the host and shim (TCG)', () => {
  let host: PluginHost;
  let hv: ShimHypervisor;
  let dir: string;
  const pids = new Set<number>();
  const events: VmEvent[] = [];

  const config = (extra: Record<string, unknown> = {}, plugin: Record<string, string | number | string[]> = {}) => ({
    vcpus: { boot: 1, max: 2 },
    memory: { sizeMiB: 256, maxMiB: 512, slots: 2 },
    plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR, guestScript: WATCHER, ...plugin },
    ...extra,
  });

  async function started(vm: ShimVm): Promise<{ pid: number; console: string }> {
    const info = await vm.info();
    if (info.pid !== undefined) pids.add(info.pid);
    return { pid: info.pid ?? 0, console: (await vm.console()).path };
  }

  /** A VM created with `cfg` and started: its QEMU's pid and console log. */
  async function booted(cfg: ReturnType<typeof config>): Promise<{ vm: ShimVm; pid: number; console: string }> {
    const vm = await hv.createVm({ config: cfg });
    await vm.start();
    return { vm, ...(await started(vm)) };
  }

  /** vm/stop with a long grace period ends well before it runs out (the guest powered off, or QEMU quit at once). */
  async function stopsEarly(vm: ShimVm, pid: number): Promise<void> {
    const t0 = Date.now();
    expect((await vm.stop({ graceMs: 50_000 })).status).toBe('stopped');
    // Before the grace time is out, so not forced at its end: a booting guest under TCG on a loaded 2-core
    // machine took up to 31 s to answer the button.
    expect(Date.now() - t0).toBeLessThan(45_000);
    expect(alive(pid)).toBe(false);
  }

  beforeAll(async () => {
    dir = await tempDir('hvplug-qemu-plugin-');
    host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      logger: memoryLogger().logger,
      plugins: [{ name: 'qemu', command: pluginExecutable('qemu') }],
      supervision: { backoffMs: 50, healthIntervalMs: 0 },
    });
    hv = await host.hypervisor('qemu');
    hv.onEvent((e) => events.push(e));
  });

  afterAll(async () => {
    for (const vm of hv?.listVms() ?? []) await vm.delete().catch(() => undefined);
    await host?.close();
    // No orphans: every QEMU this file started is gone.
    for (const pid of pids) {
      if (alive(pid)) process.kill(-pid, 'SIGKILL');
      expect(alive(pid), `QEMU ${pid} left running`).toBe(false);
    }
    await removeTempDirs();
  }, 60_000);

  it('advertises honest capabilities', () => {
    const caps = hv.info.capabilities;
    expect(caps.machines).toEqual({ q35: { hotplug: true }, microvm: { hotplug: false } });
    expect(caps.devices.block).toEqual({ coldplug: true, hotplug: true, hotunplug: true });
    expect(caps.devices.cpu).toEqual({ coldplug: false, hotplug: true, hotunplug: false });
    expect(caps.devices.vfio).toBeUndefined();
    // vsock only where the host can back it.
    expect(caps.devices.vsock !== undefined).toBe(existsSync('/dev/vhost-vsock'));
    expect(caps.methods).toEqual(expect.arrayContaining(['vm/save', 'vm/restore', 'vm/recover', 'image/create']));
  });

  it('refuses bad input with typed errors and no QEMU left behind', async () => {
    const missing = join(dir, 'no-such-vmlinuz');
    const e1 = await hv.createVm({ config: { ...config(), kernel: { path: missing } } }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(InvalidConfigError);
    expect(String((e1 as Error).message)).toContain(missing);

    const e2 = await hv.createVm({ config: config({ devices: [{ type: 'vfio', id: 'gpu', hostPath: '/sys/bus/pci/devices/0000:00:00.0' }] }) }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(NotSupportedError);
    const e3 = await hv.createVm({ config: config({ machine: 'pc-i440fx' }) }).catch((e: unknown) => e);
    expect(e3).toBeInstanceOf(InvalidConfigError);

    // QEMU itself refuses the command line: its stderr comes back in the error.
    const bad = await hv.createVm({ config: config({}, { extraArgs: ['-device', 'hvplug-no-such-device'] }) });
    const e4 = await bad.start().catch((e: unknown) => e);
    expect(e4).toBeInstanceOf(VmmFailureError);
    expect(String((e4 as Error).message)).toMatch(/hvplug-no-such-device/);
    expect(bad.status).toBe('created');
    await bad.delete();

    // QEMU killed from outside: the VM is crashed, with an exited and a crashed event.
    const victim = await hv.createVm({ config: config() });
    await victim.start();
    const { pid } = await started(victim);
    const waited = victim.wait(undefined, { timeoutMs: 30_000 });
    process.kill(pid, 'SIGKILL');
    expect(await waited).toMatchObject({ status: 'crashed', reason: expect.stringMatching(/SIGKILL/) });
    expect(events.filter((e) => e.vmId === victim.id).map((e) => e.type)).toEqual(expect.arrayContaining(['exited', 'crashed']));
    await victim.delete();
  }, 60_000);

  it('validates configs, makes images and seeds, and reports a gone QEMU as lost', async () => {
    const v = await hv.validateConfig({ config: config() });
    expect(v.config.machine).toBe('q35');
    await expect(hv.validateConfig({ config: config({}, { accel: 'warp' }) })).rejects.toBeInstanceOf(InvalidConfigError);

    // A qcow2 overlay on a raw base, and a NoCloud seed: a FAT volume labelled cidata.
    const base = join(dir, 'base.raw');
    await hv.ensureImage({ path: base, format: 'raw', sizeBytes: 8 * 1024 * 1024 });
    expect((await hv.ensureImage({ path: base, format: 'raw' })).created).toBe(false);
    const overlay = join(dir, 'overlay.qcow2');
    const seedPath = join(dir, 'seed.img');
    const r = await hv.createImage({ path: overlay, backingFile: base, cloudInit: { seedPath, userData: '#cloud-config\n', metaData: 'instance-id: hvplug-1\n' } });
    expect(r).toEqual({ path: overlay, seedPath });
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', overlay], { encoding: 'utf8' })) as Record<string, unknown>;
    expect(info['backing-filename']).toBe(base);
    const seed = readFileSync(seedPath);
    expect(seed.subarray(0, 512).toString('latin1')).toContain('cidata');
    expect(seed.toString('latin1')).toContain('instance-id: hvplug-1');
    await hv.deleteImage({ path: overlay });
    await hv.deleteImage({ path: overlay });
    expect(existsSync(overlay)).toBe(false);

    // vm/recover from a state whose QEMU is gone: the VM is lost, not an error.
    const created = await hv.createVm({ config: config() });
    const state = { ...(created.state as Record<string, unknown>), status: 'running', pid: 2 ** 22 - 1 };
    await created.delete();
    const lost = await hv.recoverVm({ config: config(), state });
    expect(lost.status).toBe('lost');
    await lost.delete();
  }, 60_000);

  let snapshot = '';
  let savedTick = 0;

  it('boots, hot-plugs a disk and a CPU, pauses and resumes, saves (q35)', async () => {
    const t0 = Date.now();
    const vm = await hv.createVm({ config: config() });
    expect((await vm.start()).status).toBe('running');
    const { pid, console: log } = await started(vm);
    expect(alive(pid)).toBe(true);
    await waitConsole(log, /HVPLUG-GUEST-READY[\s\S]*TICK:1 /);
    const bootMs = Date.now() - t0;

    const info = await vm.info();
    expect(info).toMatchObject({ status: 'running', machine: 'q35', accel: 'tcg', vcpus: 1, memoryMiB: 256 });
    expect(String(info.details.accelReason)).toMatch(/tcg/);
    expect((await vm.check()).ok).toBe(true);
    expect((await vm.pids()).pids).toEqual([pid]);
    expect((await vm.threads()).vcpus).toHaveLength(1);
    expect((await vm.stats()).memoryRssBytes).toBeGreaterThan(0);
    // Disconnect drops QMP; the next call re-attaches to the same QEMU.
    await vm.disconnect();
    expect(alive(pid)).toBe(true);
    expect((await vm.check()).ok).toBe(true);

    // A hot-plugged disk shows up in the guest's /sys/block and goes away after unplug.
    const image = join(dir, 'disk.raw');
    expect((await hv.ensureImage({ path: image, format: 'raw', sizeBytes: 16 * 1024 * 1024 })).created).toBe(true);
    let from = consoleSize(log);
    await vm.addDevice({ device: { type: 'block', id: 'disk1', path: image } });
    await waitConsole(log, /BLOCK:\[vda \]/, from);
    expect((await vm.info()).devices).toEqual([{ id: 'disk1', type: 'block' }]);
    await vm.removeDevice({ deviceId: 'disk1' });
    from = consoleSize(log);
    await waitConsole(log, /TICK:\d+ BLOCK:\[\] /, from);
    expect(events.some((e) => e.vmId === vm.id && e.type === 'device-removed' && e.deviceId === 'disk1')).toBe(true);

    // A hot-added vCPU comes online.
    from = consoleSize(log);
    expect((await vm.resizeVcpus({ count: 2 })).vcpus).toBe(2);
    await waitConsole(log, /CPUS:\[0-1\]/, from);
    expect((await vm.threads()).vcpus).toHaveLength(2);

    // A user-mode NIC appears as eth0 and goes away again.
    from = consoleSize(log);
    await vm.addDevice({ device: { type: 'net', id: 'nic1', backend: 'user', mac: '52:54:00:12:34:56' } });
    await waitConsole(log, /NET:\[eth0 lo \]/, from);
    await vm.removeDevice({ deviceId: 'nic1' });
    from = consoleSize(log);
    await waitConsole(log, /TICK:\d+ [^\n]*NET:\[lo \]/, from);

    // Memory grows by a pc-dimm that the guest brings online.
    const memBefore = Math.max(...memKbs(consoleText(log)));
    from = consoleSize(log);
    expect((await vm.resizeMemory({ sizeMiB: 384 })).memoryMiB).toBe(384);
    await eventually(() => memKbs(consoleText(log, from)).some((kb) => kb >= memBefore + 120 * 1024), 30_000, 'the hot-added 128 MiB online in the guest');

    // Paused: no console progress; resumed: the counter moves again. Neither changes the plugin's state (a live VM's
    // is written running): their answers leave it out, and the host keeps the one it has.
    // Each tells the host its event once, by the time its answer comes (QEMU's STOP and RESUME are the call's own).
    const stateBefore = vm.state;
    const typesSince = (n: number): string[] => events.slice(n).filter((e) => e.vmId === vm.id).map((e) => e.type);
    const beforePause = events.length;
    const paused = await vm.pause();
    expect(paused).toEqual({ status: 'paused' });
    expect(typesSince(beforePause)).toEqual(['paused']);
    expect(vm.state).toEqual(stateBefore);
    const frozen = consoleSize(log);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(consoleText(log, frozen)).not.toMatch(/TICK:/);
    const beforeResume = events.length;
    expect(await vm.resume()).toEqual({ status: 'running' });
    expect(typesSince(beforeResume)).toEqual(['resumed']);
    expect(vm.state).toEqual(stateBefore);
    await waitConsole(log, /TICK:/, frozen, 10_000);
    expect(events.filter((e) => e.vmId === vm.id).map((e) => e.type)).toEqual(expect.arrayContaining(['running', 'paused', 'resumed']));

    // Save (a running VM is refused: pause first); the last counter printed is where a restore must continue.
    snapshot = join(dir, 'snap.bin');
    await expect(vm.save({ path: snapshot })).rejects.toBeInstanceOf(InvalidStateError);
    await vm.pause();
    const saved = await vm.save({ path: snapshot });
    expect(saved.sizeBytes).toBeGreaterThan(1024 * 1024);
    expect(vm.status).toBe('paused');
    savedTick = Math.max(...ticks(consoleText(log)));
    expect(savedTick).toBeGreaterThan(0);

    expect((await vm.stop({ graceMs: 0 })).status).toBe('stopped');
    expect(alive(pid)).toBe(false);
    expect((await vm.stop({ graceMs: 0 })).status).toBe('stopped');
    // Pause of a stopped VM: InvalidState.
    await expect(vm.pause()).rejects.toBeInstanceOf(InvalidStateError);
    await vm.delete();
    await vm.delete();
    console.info(`q35 boot to first tick: ${bootMs} ms`);
  }, 240_000);

  it('lets a caller give up on an unplug the guest has not answered without holding the VM, and asks again later', async () => {
    const early = join(dir, 'early.raw');
    const late = join(dir, 'late.raw');
    await hv.ensureImage({ path: early, format: 'raw', sizeBytes: 8 * 1024 * 1024 });
    await hv.ensureImage({ path: late, format: 'raw', sizeBytes: 8 * 1024 * 1024 });
    const { vm, console: log } = await booted(config({ devices: [{ type: 'block', id: 'early', path: early }] }));
    // The guest is still booting: nothing in it answers the unplug request yet.
    await expect(vm.removeDevice({ deviceId: 'early' }, { timeoutMs: 300 })).rejects.toBeInstanceOf(TimeoutError);
    // Calls the plugin runs one at a time per VM are not stuck behind the unanswered unplug.
    await vm.addDevice({ device: { type: 'block', id: 'late', path: late } }, { timeoutMs: 10_000 });
    expect((await vm.info()).devices.map((d) => d.id).sort()).toEqual(['early', 'late']);
    // A device_del sent while the guest booted is lost on it; asked again once it is up (QEMU re-sends the
    // request after 5 s), the guest ejects the disk, and the host's record follows.
    await waitConsole(log, /HVPLUG-GUEST-READY[\s\S]*TICK:1 /);
    await vm.removeDevice({ deviceId: 'early' }, { timeoutMs: 30_000 });
    expect(vm.config.devices.map((d) => d.id)).toEqual(['late']);
    expect(events.some((e) => e.vmId === vm.id && e.type === 'device-removed' && e.deviceId === 'early')).toBe(true);
    expect((await vm.info()).devices).toEqual([{ id: 'late', type: 'block' }]);
    await vm.delete();
  }, 120_000);

  it('completes an unplug asked while the guest boots, by asking again once the guest is up', async () => {
    const disk = join(dir, 'booting.raw');
    await hv.ensureImage({ path: disk, format: 'raw', sizeBytes: 8 * 1024 * 1024 });
    const { vm, console: log } = await booted(config({ devices: [{ type: 'block', id: 'booting', path: disk }] }));
    const t0 = Date.now();
    // Asked at once: the first device_del reaches a guest with no hotplug driver yet and is lost there.
    expect(consoleText(log), 'the unplug is asked before the guest is up').not.toMatch(/HVPLUG-GUEST-READY/);
    await vm.removeDevice({ deviceId: 'booting' }, { timeoutMs: 30_000 });
    expect(vm.config.devices).toEqual([]);
    expect((await vm.info()).devices).toEqual([]);
    expect(events.some((e) => e.vmId === vm.id && e.type === 'device-removed' && e.deviceId === 'booting')).toBe(true);
    // The guest itself no longer has the disk.
    const from = consoleSize(log);
    await waitConsole(log, /TICK:\d+ BLOCK:\[\] /, from);
    console.info(`unplug asked during boot done after ${Date.now() - t0} ms`);
    await vm.delete();
  }, 120_000);

  it('restores the snapshot paused, continues the counter, and survives a SIGKILLed plugin', async () => {
    expect(snapshot).not.toBe('');
    const vm = await hv.restoreVm({ config: config(), path: snapshot });
    expect(vm.status).toBe('paused');
    const { pid, console: log } = await started(vm);
    expect(await vm.info()).toMatchObject({ vcpus: 2, memoryMiB: 384 });
    expect(consoleText(log)).not.toMatch(/TICK:/);
    expect((await vm.resume()).status).toBe('running');
    const text = await waitConsole(log, /TICK:\d+ [\s\S]*TICK:\d+ /);
    const after = ticks(text);
    // The guest goes on from the saved value: no reboot (no TICK:1), the next numbers follow.
    expect(after[0]).toBeGreaterThan(savedTick);
    expect(after[0]).toBeLessThanOrEqual(savedTick + 2);
    expect(text).not.toMatch(/HVPLUG-GUEST-READY/);

    // SIGKILL the plugin: QEMU keeps running; the restarted plugin re-attaches through vm/recover.
    const victim = (await host.client('qemu'))!.pid!;
    const restarted = new Promise((r) => host.once('plugin-restarted', r));
    process.kill(victim, 'SIGKILL');
    await restarted;
    expect(alive(pid)).toBe(true);
    await eventually(async () => (await vm.check().catch(() => ({ ok: false }))).ok, 20_000, 'vm/check after re-attach');
    expect((await vm.info()).pid).toBe(pid);
    const from = consoleSize(log);
    await waitConsole(log, /TICK:/, from, 10_000);
    expect((await vm.stop({ graceMs: 0 })).status).toBe('stopped');
    await eventually(() => !alive(pid), 10_000, 'QEMU gone after stop');
    await vm.delete();
  }, 240_000);

  it.skipIf(TAP_SKIP !== undefined)(`hot-plugs a tap NIC that carries the guest's packets to the host, and unplugs it${TAP_SKIP ? ` (skipped: ${TAP_SKIP})` : ''}`, async () => {
    const tap = `hvplugtap${process.pid % 10000}`;
    const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'ignore' });
    ip('tuntap', 'add', 'dev', tap, 'mode', 'tap');
    try {
      ip('addr', 'add', `${TAP_NET.host}/${TAP_NET.prefix}`, 'dev', tap);
      ip('link', 'set', tap, 'up');
      const { vm, console: log } = await booted(config({}, { guestScript: TAP_GUEST }));
      await waitConsole(log, /HVPLUG-GUEST-READY[\s\S]*NET:\[lo \]/);
      await vm.addDevice({ device: { type: 'net', id: 'tap0', backend: 'tap', tapName: tap, mac: TAP_MAC } });
      // The guest sees the NIC with the MAC asked for, and its ping crosses the tap to the host.
      expect(await waitConsole(log, /MAC:\[[^\]]*\]/)).toContain(`MAC:[${TAP_MAC}]`);
      await waitConsole(log, /PING-OK/);
      await vm.removeDevice({ deviceId: 'tap0' });
      const from = consoleSize(log);
      await waitConsole(log, /NET:\[lo \]/, from);
      expect((await vm.info()).devices).toEqual([]);
      await vm.delete();
    } finally {
      ip('tuntap', 'del', 'dev', tap, 'mode', 'tap');
    }
  }, 120_000);

  it('forgets the vm/wait calls the host cancelled: vm/info counts only the callers still waiting', async () => {
    const vm = await hv.createVm({ config: config() });
    await vm.start();
    const { pid } = await started(vm);
    const waiting = async (): Promise<unknown> => (await vm.info()).details.waiting;
    const kept = vm.wait(undefined, { timeoutMs: null });
    const cancels = Array.from({ length: 20 }, () => new AbortController());
    const cancelled = cancels.map((ac) => vm.wait(undefined, { signal: ac.signal, timeoutMs: null }).then(() => 'answered', () => 'rejected'));
    await eventually(async () => (await waiting()) === 21, 10_000, 'the 21 vm/wait calls to reach the plugin');
    for (const ac of cancels) ac.abort();
    expect(await Promise.all(cancelled)).toEqual(cancels.map(() => 'rejected'));
    await eventually(async () => (await waiting()) === 1, 10_000, 'the plugin to drop the 20 cancelled waits').catch(async (e: Error) => {
      throw new Error(`${e.message}: vm/info says ${JSON.stringify(await waiting())} waiting`);
    });
    // The one left is still answered when the VM ends.
    await vm.stop({ force: true });
    expect(await kept).toMatchObject({ status: 'stopped' });
    expect(await waiting()).toBe(0);
    expect(alive(pid)).toBe(false);
    await vm.delete();
  }, 60_000);

  it('stops gracefully: vm/stop presses the power button and the guest powers itself off', async () => {
    const { vm, pid, console: log } = await booted(config());
    await waitConsole(log, /HVPLUG-GUEST-READY[\s\S]*TICK:1 /);
    await stopsEarly(vm, pid);
    // The guest's init answered the button (no forced quit after the grace period ran out).
    expect(consoleText(log)).toMatch(/HVPLUG-GUEST-POWER-BUTTON/);
    // QEMU (-no-shutdown) stops its CPUs after the guest's power-off: that is the end of the VM, not a pause.
    expect(events.filter((e) => e.vmId === vm.id).map((e) => e.type)).not.toContain('paused');
    await vm.delete();
  }, 120_000);

  it('stops gracefully right after start: the button is pressed again until the booting guest answers', async () => {
    const { vm, pid, console: log } = await booted(config());
    // The first press reaches a guest whose /init is not up yet, and is lost there.
    expect(consoleText(log)).not.toMatch(/HVPLUG-GUEST-READY/);
    await stopsEarly(vm, pid);
    expect(consoleText(log)).toMatch(/HVPLUG-GUEST-READY[\s\S]*HVPLUG-GUEST-POWER-BUTTON/);
    await vm.delete();
  }, 120_000);

  it('stops a paused VM at once: a paused guest cannot answer the power button', async () => {
    const { vm, pid, console: log } = await booted(config());
    await waitConsole(log, /HVPLUG-GUEST-READY[\s\S]*TICK:1 /);
    expect((await vm.pause()).status).toBe('paused');
    await stopsEarly(vm, pid);
    expect(consoleText(log)).not.toMatch(/HVPLUG-GUEST-POWER-BUTTON/);
    await vm.delete();
  }, 120_000);

  it('boots microvm, refuses hotplug there in the shim, and sees the guest power off', async () => {
    const script = 'echo MICRO-UP; while [ ! -e /tmp/never ] && [ $((i+=1)) -lt 20 ]; do sleep 0.2; done; echo MICRO-DONE';
    const { vm, pid, console: log } = await booted(config({ machine: 'microvm', vcpus: { boot: 1 }, memory: { sizeMiB: 256 } }, { guestScript: script }));
    const waited = vm.wait(undefined, { timeoutMs: 120_000 });
    await waitConsole(log, /MICRO-UP/);
    await expect(vm.addDevice({ device: { type: 'block', id: 'late', path: join(dir, 'disk.raw') } })).rejects.toBeInstanceOf(NotSupportedError);
    await expect(vm.resizeVcpus({ count: 2 })).rejects.toThrow();
    // The guest's script ends and it powers off: vm/wait resolves, with an exited event.
    const end = await waited;
    expect(end.status).toBe('stopped');
    // The guest's own reason, not that of the quit the plugin sends once QEMU (-no-shutdown) has stopped.
    expect(end.reason).toMatch(/guest shutdown \(guest-shutdown\)/);
    expect(consoleText(log)).toMatch(/MICRO-DONE/);
    expect(events.some((e) => e.vmId === vm.id && e.type === 'exited')).toBe(true);
    expect(events.filter((e) => e.vmId === vm.id).map((e) => e.type)).not.toContain('paused');
    await eventually(() => !alive(pid), 5_000, 'microvm QEMU gone');
    await vm.delete();
  }, 120_000);
});
