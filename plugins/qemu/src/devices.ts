// A VM's devices: cold-attached while QEMU is down (they go on its command line at the next start), hot-plugged
// and unplugged over QMP while it runs; vCPU and memory resizes are hot-adds of cpu and pc-dimm devices.
import { PluginError, errors } from 'hvplug/plugin-sdk';
import type { Device, ResultInputOf } from 'hvplug/protocol';
import { rootPortId } from './cmdline.js';
import { qemuDeviceId, qemuParts, supportOf, type Attached, type QemuParts } from './device-map.js';
import { toPluginError, vmmCall } from './errors.js';
import type { QemuInstance } from './process.js';
import { QmpCommandError } from './qmp.js';
import { askingAgain, type QemuVm } from './vm.js';

/**
 * device_del only asks the guest, and a guest still booting (its hotplug driver, its /init not up yet) never
 * answers such a request, while it answers a repeat once it is up. QEMU refuses a repeated device_del for 5 s
 * after each.
 */
const UNPLUG_REPEAT_MS = 6_000;
const UNPLUG_TIMEOUT_MS = 30_000;

let autoIds = 0;
/** An id for a device a resize adds: unique in this process, and unlikely to meet one a caller chose. */
const autoId = (kind: string): string => `${kind}-auto-${++autoIds}-${Date.now() % 100000}`;

/** device_del until QEMU reports DEVICE_DELETED (the device is gone), the deadline passes or `signal` aborts. */
async function unplug(inst: QemuInstance, qid: string, signal?: AbortSignal): Promise<void> {
  const deleted = inst.qmp.waitForEvent('DEVICE_DELETED', { predicate: (e) => e.data.device === qid, timeoutMs: UNPLUG_TIMEOUT_MS, signal });
  deleted.catch(() => undefined);
  const ask = async (): Promise<void> => {
    try {
      await inst.qmp.execute('device_del', { id: qid }, { timeoutMs: 10_000 });
    } catch (e) {
      // Asked before (a repeat, or a call that gave up) and still pending: that request stands.
      if (!(e instanceof QmpCommandError && /already in the process of unplug/.test(e.desc))) throw toPluginError(e);
    }
  };
  await ask();
  // The wait for DEVICE_DELETED decides, and fails on its own.
  await askingAgain(deleted, UNPLUG_REPEAT_MS, ask);
}

function freePort(vm: QemuVm): number | undefined {
  const used = new Set(vm.state.attached.map((a) => a.port));
  for (let i = 0; i < vm.state.launch.hotplugRootPorts; i++) if (!used.has(i)) return i;
  return undefined;
}

/** Cold devices (vm/create, device/add on a VM that is not running): on free root ports (q35), so they can be hot-unplugged later. */
export function coldAttach(vm: QemuVm, device: Device): void {
  const machine = vm.state.launch.machine;
  if (!supportOf(machine, device.type)?.coldplug) throw errors.notSupported('device/add', `device type ${device.type} cannot be attached before boot on ${machine}`);
  if (vm.state.attached.some((a) => a.device.id === device.id)) throw errors.alreadyExists(device.id);
  const port = machine === 'q35' ? freePort(vm) : undefined;
  const parts = qemuParts(device, machine, port === undefined ? undefined : rootPortId(port));
  vm.state.attached.push({ device, parts, ...(port === undefined ? {} : { port }) });
}

export function addDevice(vm: QemuVm, device: Device, signal: AbortSignal): Promise<ResultInputOf<'device/add'>> {
  return vm.exclusive(async () => {
    if (vm.live) {
      await hotAdd(vm, device);
    } else {
      vm.require(['created', 'stopped', 'crashed']);
      coldAttach(vm, device);
    }
    vm.emit({ type: 'device-added', deviceId: device.id });
    vm.stateChanged();
    return { deviceId: device.id, state: vm.encoded() };
  }, signal);
}

async function hotAdd(vm: QemuVm, device: Device): Promise<void> {
  const s = vm.state;
  const machine = s.launch.machine;
  if (!supportOf(machine, device.type)?.hotplug) throw errors.notSupported('device/add', `device type ${device.type} cannot be hot-plugged on ${machine}`);
  if (s.attached.some((a) => a.device.id === device.id)) throw errors.alreadyExists(device.id);
  let parts: QemuParts;
  let port: number | undefined;
  if (device.type === 'cpu') {
    parts = await cpuParts(vm, device.id);
  } else {
    if (device.type !== 'memory') {
      port = freePort(vm);
      if (port === undefined) throw errors.resourceExhausted(`all ${s.launch.hotplugRootPorts} hotplug root ports are taken (plugin.hotplugRootPorts)`);
    }
    if (device.type === 'memory') {
      const max = s.launch.memory.maxMiB ?? s.launch.memory.sizeMiB;
      if (s.memoryMiB + device.sizeMiB > max) throw errors.resourceExhausted(`memory would exceed memory.maxMiB (${max} MiB)`);
    }
    parts = qemuParts(device, machine, port === undefined ? undefined : rootPortId(port));
  }
  const undo: { command: string; args: Record<string, string> }[] = [];
  try {
    for (const o of parts.objects) {
      await vm.qmp('object-add', o);
      undo.unshift({ command: 'object-del', args: { id: String(o.id) } });
    }
    for (const b of parts.blockdevs) {
      await vm.qmp('blockdev-add', b);
      undo.unshift({ command: 'blockdev-del', args: { 'node-name': String(b['node-name']) } });
    }
    for (const n of parts.netdevs) {
      await vm.qmp('netdev_add', n);
      undo.unshift({ command: 'netdev_del', args: { id: String(n.id) } });
    }
    for (const d of parts.devices) await vm.qmp('device_add', d);
  } catch (e) {
    // Backends created for a device QEMU refused would leak: take them down again.
    for (const u of undo) await vm.qmp(u.command, u.args).catch(() => undefined);
    throw e;
  }
  s.attached.push({ device, parts, ...(port === undefined ? {} : { port }) });
  if (device.type === 'cpu') s.vcpus += 1;
  if (device.type === 'memory') s.memoryMiB += device.sizeMiB;
}

/** The next free CPU slot as QEMU describes it (driver and socket/core/thread ids). */
async function cpuParts(vm: QemuVm, id: string): Promise<QemuParts> {
  const slots = (await vm.qmp('query-hotpluggable-cpus')) as { type: string; props: Record<string, number | string>; 'qom-path'?: string }[];
  const free = slots.filter((s) => s['qom-path'] === undefined).sort((a, b) => Number(a.props['socket-id'] ?? 0) - Number(b.props['socket-id'] ?? 0));
  const slot = free[0];
  if (!slot) throw errors.resourceExhausted(`no free CPU slot: vcpus.max is ${vm.state.launch.vcpusMax}`);
  return { objects: [], blockdevs: [], netdevs: [], devices: [{ driver: slot.type, id: qemuDeviceId(id), ...slot.props }] };
}

export function removeDevice(vm: QemuVm, deviceId: string, signal: AbortSignal): Promise<ResultInputOf<'device/remove'>> {
  return vm.exclusive(async () => {
    const rec = vm.state.attached.find((a) => a.device.id === deviceId);
    if (!rec) throw errors.deviceNotFound('device/remove', vm.vmId, deviceId);
    if (vm.live) {
      await hotRemove(vm, rec, signal);
    } else {
      vm.state.attached = vm.state.attached.filter((a) => a !== rec);
      vm.emit({ type: 'device-removed', deviceId });
    }
    vm.stateChanged();
    return { state: vm.encoded() };
  }, signal);
}

async function hotRemove(vm: QemuVm, rec: Attached, signal: AbortSignal): Promise<void> {
  const machine = vm.state.launch.machine;
  if (!supportOf(machine, rec.device.type)?.hotunplug) throw errors.notSupported('device/remove', `device type ${rec.device.type} cannot be hot-unplugged on ${machine}`);
  const inst = await vm.control();
  try {
    // The VM drops the device's backends when DEVICE_DELETED comes, whether anyone still waits or not.
    await unplug(inst, qemuDeviceId(rec.device.id), signal);
  } catch (e) {
    if (!signal.aborted) throw toPluginError(e);
    // The VM's calls run one at a time: a caller that gives up must not leave the next ones queued behind
    // a guest that may never answer.
    throw new PluginError('Cancelled', `device/remove of ${rec.device.id}: the caller stopped waiting; if the guest still ejects it, device-removed says so`, { method: 'device/remove' });
  }
  await vmmCall(() => vm.backendsDropped.get(rec.device.id) ?? Promise.resolve());
  // The DEVICE_DELETED event normally dropped it already.
  if (vm.state.attached.includes(rec)) {
    vm.state.attached = vm.state.attached.filter((a) => a !== rec);
    vm.emit({ type: 'device-removed', deviceId: rec.device.id });
  }
}

export function resizeVcpus(vm: QemuVm, count: number, signal: AbortSignal): Promise<ResultInputOf<'vm/resizeVcpus'>> {
  return vm.exclusive(async () => {
    vm.require(['running', 'paused']);
    const s = vm.state;
    if (s.launch.machine !== 'q35') throw errors.notSupported('vm/resizeVcpus', 'microvm has no CPU hotplug');
    if (count > s.launch.vcpusMax) throw errors.resourceExhausted(`${count} vCPUs exceed vcpus.max (${s.launch.vcpusMax})`);
    if (count < s.launch.vcpusBoot) throw errors.notSupported('vm/resizeVcpus', `boot vCPUs (${s.launch.vcpusBoot}) cannot be removed`);
    while (s.vcpus < count) await hotAdd(vm, { type: 'cpu', id: autoId('vcpu') });
    while (s.vcpus > count) {
      const last = [...s.attached].reverse().find((a) => a.device.type === 'cpu');
      if (!last) break;
      const inst = await vm.control();
      await vmmCall(() => unplug(inst, qemuDeviceId(last.device.id)));
      s.attached = s.attached.filter((a) => a !== last);
      s.vcpus -= 1;
    }
    vm.stateChanged();
    return { vcpus: s.vcpus };
  }, signal);
}

export function resizeMemory(vm: QemuVm, sizeMiB: number, signal: AbortSignal): Promise<ResultInputOf<'vm/resizeMemory'>> {
  return vm.exclusive(async () => {
    vm.require(['running', 'paused']);
    const s = vm.state;
    if (sizeMiB < s.memoryMiB) throw errors.notSupported('vm/resizeMemory', 'memory only grows (pc-dimm unplug needs the guest to offline the memory first)');
    if (sizeMiB > s.memoryMiB) await hotAdd(vm, { type: 'memory', id: autoId('mem'), sizeMiB: sizeMiB - s.memoryMiB });
    vm.stateChanged();
    return { memoryMiB: s.memoryMiB };
  }, signal);
}
