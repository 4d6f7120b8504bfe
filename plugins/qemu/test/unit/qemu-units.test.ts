// Pure parts of plugins/qemu: the QEMU command line, the accelerator choice, the cpio writer, module
// resolution and the cached initramfs (read back with an independent newc parser, and with the
// system's cpio where installed).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { decideAccel, hardwareVirtFlag, hostTscKhz } from '../../src/accel.js';
import { QemuConfigError, type QemuLaunchConfig, buildQemuArgs, defaultKernelCmdline, escapeOptionValue, rootPortId } from '../../src/cmdline.js';
import { parentDirs, writeCpioNewc } from '../../src/cpio.js';
import { GUEST_INIT } from '../../src/guest-init.js';
import { buildInitramfs, compareKernelVersions, findDefaultKernel, guestScriptArchive, isStaticElf64 } from '../../src/initramfs.js';
import { moduleNameOf, parseModulesDep, resolveModules } from '../../src/kernel-modules.js';
import { parseQmpLine } from '../../src/qmp-schema.js';
import type { Attached } from '../../src/device-map.js';
import { qemuSettings } from '../../src/settings.js';
import { vmState } from '../../src/state.js';
import { QemuVm } from '../../src/vm.js';

interface CpioMember {
  name: string;
  mode: number;
  rdev: [number, number];
  data: Buffer;
}

/** An independent newc reader: checks magic, alignment and the trailer while it parses. */
function readNewc(buf: Buffer): CpioMember[] {
  const out: CpioMember[] = [];
  let off = 0;
  const align = (n: number): number => (n + 3) & ~3;
  for (;;) {
    const magic = buf.toString('ascii', off, off + 6);
    if (magic !== '070701') throw new Error(`bad magic ${JSON.stringify(magic)} at ${off}`);
    const field = (i: number): number => Number.parseInt(buf.toString('ascii', off + 6 + i * 8, off + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const rdev: [number, number] = [field(9), field(10)];
    const nameSize = field(11);
    const name = buf.toString('utf8', off + 110, off + 110 + nameSize - 1);
    if (buf[off + 110 + nameSize - 1] !== 0) throw new Error(`name of ${name} not NUL-terminated`);
    const dataAt = align(off + 110 + nameSize);
    const data = buf.subarray(dataAt, dataAt + size);
    off = align(dataAt + size);
    if (name === 'TRAILER!!!') {
      if (off !== buf.length) throw new Error(`${buf.length - off} bytes after the trailer`);
      return out;
    }
    out.push({ name, mode, rdev, data });
  }
}

const temps: string[] = [];
async function temp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'hvplug-qemu-unit-'));
  temps.push(d);
  return d;
}
afterEach(async () => {
  await Promise.all(temps.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const base: QemuLaunchConfig = {
  machine: 'q35',
  accel: 'tcg',
  kernel: '/boot/vmlinuz',
  initrd: '/run/vm/initrd.img',
  vcpus: { boot: 1 },
  memory: { sizeMiB: 256 },
  qmpSocket: '/run/vm/qmp.sock',
  console: { kind: 'log', logFile: '/run/vm/console.log' },
};

/** The value following each occurrence of `flag`. */
const valuesOf = (args: string[], flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []));

describe('buildQemuArgs', () => {
  it('builds a q35 command line with root ports, QMP, console, and no defaults', () => {
    const args = buildQemuArgs({ ...base, name: 'vm1', pidfile: '/run/vm/qemu.pid', paused: true });
    expect(args.slice(0, 4)).toEqual(['-nodefaults', '-no-user-config', '-display', 'none']);
    expect(valuesOf(args, '-machine')).toEqual(['q35']);
    expect(valuesOf(args, '-accel')).toEqual(['tcg']);
    expect(valuesOf(args, '-cpu')).toEqual([]);
    expect(valuesOf(args, '-smp')).toEqual(['cpus=1,maxcpus=1']);
    expect(valuesOf(args, '-m')).toEqual(['size=256M']);
    expect(valuesOf(args, '-kernel')).toEqual(['/boot/vmlinuz']);
    expect(valuesOf(args, '-initrd')).toEqual(['/run/vm/initrd.img']);
    expect(valuesOf(args, '-append')).toEqual(['console=ttyS0 quiet panic=-1']);
    expect(valuesOf(args, '-mon')).toEqual(['chardev=hvplug-qmp,mode=control']);
    expect(valuesOf(args, '-chardev')).toEqual([
      'socket,id=hvplug-qmp,path=/run/vm/qmp.sock,server=on,wait=off',
      'file,id=hvplug-console,path=/run/vm/console.log,append=on',
    ]);
    expect(valuesOf(args, '-serial')).toEqual(['chardev:hvplug-console']);
    expect(valuesOf(args, '-pidfile')).toEqual(['/run/vm/qemu.pid']);
    expect(valuesOf(args, '-name')).toEqual(['vm1,debug-threads=on']);
    expect(args).toContain('-S');
    expect(args).toContain('-no-reboot');
    expect(args).not.toContain('-incoming');
    const ports = valuesOf(args, '-device').map((d) => JSON.parse(d) as Record<string, unknown>);
    expect(ports).toHaveLength(4);
    expect(ports.map((p) => p.id)).toEqual([0, 1, 2, 3].map(rootPortId));
    expect(new Set(ports.map((p) => p.chassis)).size).toBe(4);
    expect(ports.every((p) => p.driver === 'pcie-root-port' && p.bus === 'pcie.0')).toBe(true);
  });

  it('sets up CPU and memory hotplug, KVM, restore and a socket console', () => {
    const args = buildQemuArgs({
      ...base,
      accel: 'kvm',
      vcpus: { boot: 2, max: 8 },
      memory: { sizeMiB: 512, maxMiB: 4096, slots: 4 },
      console: { kind: 'socket', socketPath: '/run/vm/console.sock', logFile: '/run/vm/console.log' },
      incoming: 'defer',
      hotplugRootPorts: 2,
      noReboot: false,
    });
    expect(valuesOf(args, '-cpu')).toEqual(['host']);
    expect(valuesOf(args, '-smp')).toEqual(['cpus=2,maxcpus=8']);
    expect(valuesOf(args, '-m')).toEqual(['size=512M,slots=4,maxmem=4096M']);
    expect(valuesOf(args, '-incoming')).toEqual(['defer']);
    expect(valuesOf(args, '-chardev')[1]).toBe('socket,id=hvplug-console,path=/run/vm/console.sock,server=on,wait=off,logfile=/run/vm/console.log,logappend=on');
    expect(valuesOf(args, '-device')).toHaveLength(2);
    expect(args).not.toContain('-no-reboot');
    expect(args).not.toContain('-S');
  });

  it('passes cold-plugged backends before the devices using them, as JSON', () => {
    const args = buildQemuArgs({
      ...base,
      hotplugRootPorts: 0,
      coldPlug: {
        devices: [{ driver: 'virtio-blk-pci', id: 'vda', drive: 'd0' }],
        blockdevs: [{ driver: 'raw', 'node-name': 'd0', file: { driver: 'file', filename: '/img' } }],
        netdevs: [{ type: 'user', id: 'n0' }],
        objects: [{ 'qom-type': 'rng-random', id: 'rng0', filename: '/dev/urandom' }],
      },
    });
    const order = args.filter((a) => ['-object', '-blockdev', '-netdev', '-device'].includes(a));
    expect(order).toEqual(['-object', '-blockdev', '-netdev', '-device']);
    expect(JSON.parse(valuesOf(args, '-blockdev')[0] ?? '')).toEqual({ driver: 'raw', 'node-name': 'd0', file: { driver: 'file', filename: '/img' } });
  });

  it('builds microvm with ACPI, no PCI and no root ports', () => {
    const args = buildQemuArgs({ ...base, machine: 'microvm' });
    expect(valuesOf(args, '-machine')).toEqual(['microvm,acpi=on,pcie=off,isa-serial=on,rtc=on']);
    expect(valuesOf(args, '-device')).toEqual([]);
    expect(valuesOf(args, '-append')[0]).toContain('pci=off');
  });

  it('lists every problem of an invalid config at once', () => {
    let err: unknown;
    try {
      buildQemuArgs({ ...base, machine: 'microvm', vcpus: { boot: 2, max: 4 }, memory: { sizeMiB: 256, maxMiB: 512 }, paused: true, incoming: 'defer' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QemuConfigError);
    const issues = (err as QemuConfigError).issues;
    expect(issues).toHaveLength(3);
    expect(issues.join('\n')).toMatch(/microvm has no CPU hotplug/);
    expect(issues.join('\n')).toMatch(/microvm has no memory hotplug/);
    expect(issues.join('\n')).toMatch(/paused and incoming/);
    expect(() => buildQemuArgs({ ...base, vcpus: { boot: 4, max: 2 } })).toThrow(/vcpus.max/);
    expect(() => buildQemuArgs({ ...base, kernel: undefined })).toThrow(/initrd needs a kernel/);
    expect(() => buildQemuArgs({ ...base, memory: { sizeMiB: 8 } })).toThrow(/sizeMiB/);
  });

  it('gives microvm guests the TSC rate they cannot calibrate themselves', () => {
    expect(defaultKernelCmdline('q35', { tscKhz: 2596142 })).toBe('console=ttyS0 quiet panic=-1');
    expect(defaultKernelCmdline('microvm', { tscKhz: 2596142 })).toBe('console=ttyS0 quiet panic=-1 pci=off tsc_early_khz=2596142');
    expect(hostTscKhz('processor\t: 0\ncpu MHz\t\t: 2596.142\n')).toBe(2596142);
    expect(hostTscKhz('processor\t: 0\n')).toBeUndefined();
  });

  it('escapes commas in option values', () => {
    expect(escapeOptionValue('/a,b/c')).toBe('/a,,b/c');
    const args = buildQemuArgs({ ...base, qmpSocket: '/run/a,b/qmp.sock' });
    expect(valuesOf(args, '-chardev')[0]).toContain('path=/run/a,,b/qmp.sock,');
  });
});

describe('accelerator choice', () => {
  const cpuinfo = (flags: string): string => `processor\t: 0\nflags\t\t: fpu ${flags} sse2\n`;

  it('reads vmx or svm from the flags line only', () => {
    expect(hardwareVirtFlag(cpuinfo('vmx'))).toBe('vmx');
    expect(hardwareVirtFlag(cpuinfo('svm'))).toBe('svm');
    expect(hardwareVirtFlag(cpuinfo('hypervisor'))).toBeNull();
    expect(hardwareVirtFlag('model name\t: vmx-like\n')).toBeNull();
  });

  it('auto takes KVM only when the device is usable and the CPU has vmx/svm', () => {
    expect(decideAccel('auto', { kvmDevice: true, hardwareVirt: 'vmx' })).toMatchObject({ accel: 'kvm', reason: expect.stringMatching(/vmx/) });
    // The nested-PVM case of these machines: /dev/kvm works, the flags lack vmx/svm.
    expect(decideAccel('auto', { kvmDevice: true, hardwareVirt: null })).toMatchObject({ accel: 'tcg', reason: expect.stringMatching(/neither vmx nor svm/) });
    expect(decideAccel('auto', { kvmDevice: '/dev/kvm: EACCES', hardwareVirt: 'svm' })).toMatchObject({ accel: 'tcg', reason: expect.stringMatching(/EACCES/) });
    expect(decideAccel('tcg', { kvmDevice: true, hardwareVirt: 'vmx' }).accel).toBe('tcg');
    expect(decideAccel('kvm', { kvmDevice: '/dev/kvm: ENOENT', hardwareVirt: null })).toMatchObject({ accel: 'kvm', reason: expect.stringMatching(/warning/) });
  });
});

describe('cpio newc writer', () => {
  it('writes dirs, files, symlinks and device nodes that a newc reader reads back', () => {
    const archive = writeCpioNewc([
      { kind: 'dir', path: 'dev' },
      { kind: 'chardev', path: '/dev/console', major: 5, minor: 1 },
      { kind: 'file', path: 'init', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
      { kind: 'symlink', path: 'sh', target: 'busybox' },
      { kind: 'file', path: 'odd', data: Buffer.from('12345') },
    ]);
    expect(archive.length % 4).toBe(0);
    const members = readNewc(archive);
    expect(members.map((m) => m.name)).toEqual(['dev', 'dev/console', 'init', 'sh', 'odd']);
    expect(members[0]?.mode).toBe(0o040755);
    expect(members[1]).toMatchObject({ mode: 0o020600, rdev: [5, 1] });
    expect(members[2]?.mode).toBe(0o100755);
    expect(members[2]?.data.toString()).toBe('#!/bin/sh\n');
    expect(members[3]?.mode).toBe(0o120777);
    expect(members[3]?.data.toString()).toBe('busybox');
    expect(members[4]?.data.toString()).toBe('12345');
  });

  it('refuses paths that escape or repeat, and lists parent directories', () => {
    expect(() => writeCpioNewc([{ kind: 'dir', path: '../x' }])).toThrow(/invalid cpio path/);
    expect(() => writeCpioNewc([{ kind: 'dir', path: 'a' }, { kind: 'dir', path: '/a/' }])).toThrow(/duplicate/);
    expect(parentDirs('/a/b/c')).toEqual(['a', 'a/b']);
  });

  it.skipIf(!existsSync('/usr/bin/cpio'))("is read by the system's cpio", async () => {
    const dir = await temp();
    await writeFile(join(dir, 'a.cpio'), writeCpioNewc([{ kind: 'dir', path: 'd' }, { kind: 'file', path: 'd/f', data: Buffer.from('hello') }]));
    const listing = execFileSync('cpio', ['-it', '--quiet', '-F', join(dir, 'a.cpio')], { encoding: 'utf8' });
    expect(listing.trim().split('\n')).toEqual(['d', 'd/f']);
  });
});

describe('kernel modules', () => {
  it('parses modules.dep and resolves dependencies before dependents', async () => {
    const dir = await temp();
    await writeFile(
      join(dir, 'modules.dep'),
      ['kernel/a/virtio_net.ko.xz: kernel/b/net_failover.ko kernel/c/failover.ko kernel/v/virtio.ko', 'kernel/b/net_failover.ko: kernel/c/failover.ko', 'kernel/c/failover.ko:', 'kernel/v/virtio.ko:', 'kernel/x/virtio-rng.ko: kernel/v/virtio.ko', ''].join('\n'),
    );
    await writeFile(join(dir, 'modules.builtin'), 'kernel/drivers/pci/hotplug/pciehp.ko\n');
    expect(moduleNameOf('kernel/x/virtio-rng.ko.zst')).toBe('virtio_rng');
    expect(parseModulesDep(await readFile(join(dir, 'modules.dep'), 'utf8')).get('virtio_net')?.deps).toHaveLength(3);
    const r = await resolveModules(dir, ['virtio_net', 'virtio-rng', 'pciehp']);
    expect(r.load.map((m) => m.name)).toEqual(['failover', 'net_failover', 'virtio', 'virtio_net', 'virtio_rng']);
    expect(r.builtin).toEqual(['pciehp']);
    await expect(resolveModules(dir, ['nope'])).rejects.toThrow(/nope is neither/);
  });
});

describe('initramfs', () => {
  it('picks the newest kernel by numeric version', async () => {
    const boot = await temp();
    for (const v of ['6.1.0-9-amd64', '6.1.0-10-amd64', '5.10.0-30-amd64']) await writeFile(join(boot, `vmlinuz-${v}`), '');
    await writeFile(join(boot, 'config-6.2.0-1-amd64'), '');
    expect(await findDefaultKernel(boot)).toEqual({ path: join(boot, 'vmlinuz-6.1.0-10-amd64'), version: '6.1.0-10-amd64' });
    expect(compareKernelVersions('6.1.0-9', '6.1.0-10')).toBeLessThan(0);
    await expect(findDefaultKernel(join(boot, 'missing'))).rejects.toThrow(/linux-image-amd64/);
  });

  it('recognizes a static executable', async () => {
    expect(isStaticElf64(await readFile(process.execPath))).toBe(false);
    if (existsSync('/bin/busybox')) expect(isStaticElf64(await readFile('/bin/busybox'))).toBe(true);
  });

  const hasGuestParts = existsSync('/bin/busybox') && existsSync('/boot') && existsSync('/lib/modules');

  it.skipIf(!hasGuestParts)('builds busybox, /init and the virtio modules in load order, and caches by content', async () => {
    const cacheDir = await temp();
    const first = await buildInitramfs({ cacheDir });
    expect(first.cached).toBe(false);
    const second = await buildInitramfs({ cacheDir });
    expect(second).toEqual({ ...first, cached: true });
    const fewer = await buildInitramfs({ cacheDir, modules: ['virtio_blk'] });
    expect(fewer.path).not.toBe(first.path);
    expect(fewer.modules).toEqual(['virtio_ring', 'virtio', 'virtio_blk']);

    const members = readNewc(gunzipSync(await readFile(first.path)));
    const byName = new Map(members.map((m) => [m.name, m]));
    expect(byName.get('init')?.data.toString()).toBe(GUEST_INIT);
    expect(byName.get('init')?.mode).toBe(0o100755);
    expect(byName.get('dev/console')?.rdev).toEqual([5, 1]);
    expect(byName.get('bin/busybox')?.data.equals(await readFile('/bin/busybox'))).toBe(true);
    const order = (byName.get('etc/hvplug/modules')?.data.toString() ?? '').trim().split('\n').map((l) => l.split(' ')[0]);
    expect(order).toEqual(first.modules);
    for (const m of ['virtio_pci', 'virtio_blk', 'virtio_net', 'virtio_console', 'vmw_vsock_virtio_transport', 'virtio_mmio']) expect(order).toContain(m);
    expect(order.indexOf('virtio')).toBeLessThan(order.indexOf('virtio_pci'));
    expect(order.indexOf('failover')).toBeLessThan(order.indexOf('net_failover'));
    expect(order.indexOf('vsock')).toBeLessThan(order.indexOf('vmw_vsock_virtio_transport'));
    // Uncompressed ELF objects: busybox insmod takes them as they are.
    for (const name of order) expect(byName.get(`lib/modules/${name}.ko`)?.data.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    // Every parent directory precedes its children (the kernel does not create parents).
    const seen = new Set<string>();
    for (const m of members) {
      for (const p of parentDirs(m.name)) expect(seen.has(p)).toBe(true);
      seen.add(m.name);
    }
  });

  it.skipIf(!existsSync('/bin/busybox'))('rebuilds when an input changes', async () => {
    const cacheDir = await temp();
    const fake = join(await temp(), 'lib-modules');
    await mkdir(join(fake, 'kernel'), { recursive: true });
    await writeFile(join(fake, 'modules.dep'), 'kernel/m.ko:\n');
    await writeFile(join(fake, 'kernel/m.ko'), '\x7fELF one');
    const a = await buildInitramfs({ cacheDir, kernelVersion: '1.0', modulesDir: fake, modules: ['m'] });
    await writeFile(join(fake, 'kernel/m.ko'), '\x7fELF two');
    const b = await buildInitramfs({ cacheDir, kernelVersion: '1.0', modulesDir: fake, modules: ['m'] });
    expect(b.cached).toBe(false);
    expect(b.path).not.toBe(a.path);
  });

  it('puts the caller script in its own archive at /hvplug/run', () => {
    const members = readNewc(gunzipSync(guestScriptArchive('echo hi')));
    expect(members.map((m) => m.name)).toEqual(['hvplug', 'hvplug/run']);
    expect(members[1]?.data.toString()).toBe('#!/bin/sh\necho hi\n');
    expect(members[1]?.mode).toBe(0o100755);
  });
});

describe('QMP line parsing', () => {
  it('classifies greeting, return, error, event and garbage', () => {
    expect(parseQmpLine('{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}').kind).toBe('greeting');
    expect(parseQmpLine('{"return": {}, "id": "a"}')).toEqual({ kind: 'return', id: 'a', value: {} });
    expect(parseQmpLine('{"error": {"class": "GenericError", "desc": "x"}}')).toEqual({ kind: 'error', id: undefined, errorClass: 'GenericError', desc: 'x' });
    expect(parseQmpLine('{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}}')).toMatchObject({ kind: 'event', event: { event: 'STOP', data: {} } });
    expect(parseQmpLine('{"event": "STOP"}').kind).toBe('invalid');
    expect(parseQmpLine('[1]').kind).toBe('invalid');
    expect(parseQmpLine('{"hello": 1}').kind).toBe('invalid');
  });
});

describe('the qemu plugin\'s VM state blob', () => {
  const launch = {
    machine: 'q35',
    accel: 'tcg',
    accelReason: 'asked for tcg',
    kernel: '/boot/vmlinuz',
    cmdline: 'console=ttyS0',
    vcpusBoot: 1,
    vcpusMax: 2,
    memory: { sizeMiB: 256 },
    hotplugRootPorts: 4,
    extraArgs: [],
  } as const;
  const disk: Attached = {
    device: { type: 'block', id: 'd0', path: '/img/d0.raw', format: 'raw', readOnly: false },
    parts: { objects: [], blockdevs: [{ driver: 'raw', 'node-name': 'blk-d0', file: { driver: 'file', filename: '/img/d0.raw' } }], netdevs: [], devices: [{ driver: 'virtio-blk-pci', id: 'hv-d0', drive: 'blk-d0' }] },
    port: 0,
  };

  it('goes through the host and back unchanged', () => {
    const state = QemuVm.initialState('/run/hvplug/vm1', { ...launch, extraArgs: [] }, [structuredClone(disk)]);
    const blob = vmState.encode(state);
    expect(blob).toMatchObject({ format: 'hvplug-qemu/vm-state', version: 1, runDir: '/run/hvplug/vm1' });
    expect(vmState.decode(blob, 'vm/recover')).toEqual(state);
  });

  it('refuses a blob whose fields are not what the plugin wrote, naming them under state', () => {
    const blob = vmState.encode(QemuVm.initialState('/run/hvplug/vm1', { ...launch, extraArgs: [] }, []));
    const bad = { ...(blob as Record<string, unknown>), runDir: 'relative', launch: { ...launch, machine: 'pc' } };
    const r = vmState.safeDecode(bad);
    expect(r.ok).toBe(false);
    expect(r.ok ? [] : r.issues.map((i) => i.path.join('.'))).toEqual(['state.runDir', 'state.launch.machine']);
  });
});

describe("the qemu plugin's settings (VmConfig.plugin)", () => {
  it('defaults an empty section, publishes the schema it parses with, and names each bad setting under plugin', () => {
    expect(qemuSettings.defaults).toEqual({ accel: 'tcg', hotplugRootPorts: 4, extraArgs: [] });
    expect(qemuSettings.jsonSchema).toMatchObject({
      type: 'object',
      additionalProperties: false,
      properties: { accel: { enum: ['kvm', 'tcg', 'auto'], default: 'tcg' }, hotplugRootPorts: { type: 'integer', minimum: 0, maximum: 32, default: 4 }, extraArgs: { type: 'array' } },
    });
    const ok = qemuSettings.parse({ accel: 'auto', guestScript: 'echo hi', initramfsCacheDir: '/var/cache/x' });
    expect(ok).toMatchObject({ accel: 'auto', guestScript: 'echo hi', initramfsCacheDir: '/var/cache/x', hotplugRootPorts: 4 });
    const bad = qemuSettings.safeParse({ accel: 'warp', hotplugRootPorts: 33, extraArgs: [1], initramfsCacheDir: 'rel', nope: true });
    expect(bad.ok).toBe(false);
    expect(bad.issues.map((i) => i.path.join('.')).sort()).toEqual(['plugin.accel', 'plugin.extraArgs.0', 'plugin.hotplugRootPorts', 'plugin.initramfsCacheDir', 'plugin.nope']);
    expect(bad.issues.find((i) => i.path.join('.') === 'plugin.nope')?.message).toMatch(/not a known setting/);
    expect(() => qemuSettings.parse({ accel: 'warp' })).toThrow(expect.objectContaining({ codeName: 'InvalidConfig' }));
  });
});
