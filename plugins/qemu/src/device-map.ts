// hvplug devices as the JSON objects QEMU takes, the same on the command line (cold plug, restore)
// and over QMP (hotplug), and which device types each machine can carry.
import { existsSync } from 'node:fs';
import { errors } from 'hvplug/plugin-sdk';
import type { Device, DeviceType } from 'hvplug/protocol';
import type { MachineType, QemuJsonObject } from './cmdline.js';

export interface DeviceSupportRow {
  readonly coldplug: boolean;
  readonly hotplug: boolean;
  readonly hotunplug: boolean;
}

/**
 * vhost-vsock needs the host's vhost_vsock module; without /dev/vhost-vsock QEMU refuses the device, so it
 * is not offered. Looked up on first use, on the host the plugin runs on (never at module load, which a
 * startup snapshot would keep from the machine that built it).
 */
let hostVsock: boolean | undefined;
function hasHostVsock(): boolean {
  hostVsock ??= existsSync('/dev/vhost-vsock');
  return hostVsock;
}
const vsock = (row: DeviceSupportRow): Partial<Record<DeviceType, DeviceSupportRow>> => (hasHostVsock() ? { vsock: row } : {});

/**
 * q35 (PCIe root ports, ACPI hotplug). cpu and memory are hot-add only: they resize the VM, and
 * unplugging needs the guest's cooperation this plugin cannot guarantee. rng is plugged like any PCI
 * device. vhost-user, virtio-fs and vfio need daemons or host devices this plugin does not manage.
 */
const q35Devices = (): Partial<Record<DeviceType, DeviceSupportRow>> => ({
  block: { coldplug: true, hotplug: true, hotunplug: true },
  net: { coldplug: true, hotplug: true, hotunplug: true },
  ...vsock({ coldplug: true, hotplug: true, hotunplug: true }),
  rng: { coldplug: true, hotplug: true, hotunplug: true },
  cpu: { coldplug: false, hotplug: true, hotunplug: false },
  memory: { coldplug: false, hotplug: true, hotunplug: false },
});

/** microvm: virtio-mmio transports fixed at boot, no hotplug of anything. */
const microvmDevices = (): Partial<Record<DeviceType, DeviceSupportRow>> => ({
  block: { coldplug: true, hotplug: false, hotunplug: false },
  net: { coldplug: true, hotplug: false, hotunplug: false },
  ...vsock({ coldplug: true, hotplug: false, hotunplug: false }),
  rng: { coldplug: true, hotplug: false, hotunplug: false },
});

/** What each machine can carry, per device type. */
function deviceTable(machine: MachineType): Partial<Record<DeviceType, DeviceSupportRow>> {
  return machine === 'microvm' ? microvmDevices() : q35Devices();
}

export function supportOf(machine: MachineType, type: DeviceType): DeviceSupportRow | undefined {
  return deviceTable(machine)[type];
}

/** Per device type, what some machine can do (for the capabilities): microvm's limits are said by `machines`. */
export function deviceCapabilities(): Partial<Record<DeviceType, DeviceSupportRow>> {
  const out: Partial<Record<DeviceType, DeviceSupportRow>> = {};
  for (const table of [deviceTable('q35'), deviceTable('microvm')]) {
    for (const [type, row] of Object.entries(table) as [DeviceType, DeviceSupportRow][]) {
      const prev = out[type];
      out[type] = prev ? { coldplug: prev.coldplug || row.coldplug, hotplug: prev.hotplug || row.hotplug, hotunplug: prev.hotunplug || row.hotunplug } : { ...row };
    }
  }
  return out;
}

/** Everything QEMU needs for one device, in creation order: objects, block nodes, netdevs, devices. */
export interface QemuParts {
  objects: QemuJsonObject[];
  blockdevs: QemuJsonObject[];
  netdevs: QemuJsonObject[];
  devices: QemuJsonObject[];
}

/** A device as attached: the hvplug description and the QEMU objects it became (kept for restore). */
export interface Attached {
  device: Device;
  parts: QemuParts;
  /** q35 root port index it occupies, if any. */
  port?: number;
}

/** QEMU ids must start with a letter; hvplug ids may start with a digit. */
export const qemuDeviceId = (id: string): string => `hv-${id}`;
export const deviceIdOf = (qemuId: string): string | undefined => (qemuId.startsWith('hv-') ? qemuId.slice(3) : undefined);

/** A property only when it has a value: QEMU rejects nulls. */
const opt = (key: string, value: string | number | undefined): Record<string, string | number> => (value === undefined ? {} : { [key]: value });

/** The QEMU objects for a device other than cpu (whose driver and properties QEMU dictates). */
export function qemuParts(device: Device, machine: MachineType, bus: string | undefined): QemuParts {
  const pci = machine === 'q35';
  const driver = (base: string): string => `${base}-${pci ? 'pci' : 'device'}`;
  const id = qemuDeviceId(device.id);
  const onBus: Record<string, string> = bus === undefined ? {} : { bus };
  const parts: QemuParts = { objects: [], blockdevs: [], netdevs: [], devices: [] };
  if ('rateLimit' in device && device.rateLimit !== undefined) {
    throw errors.notSupported('device/add', `${device.type} rate limits are not applied by this plugin (rateLimiter: false)`);
  }
  switch (device.type) {
    case 'block': {
      const node = `blk-${device.id}`;
      parts.blockdevs.push({ driver: device.format, 'node-name': node, 'read-only': device.readOnly, file: { driver: 'file', filename: device.path, 'read-only': device.readOnly } });
      parts.devices.push({ driver: driver('virtio-blk'), id, drive: node, ...opt('serial', device.serial), ...onBus });
      return parts;
    }
    case 'net': {
      const netdev = `net-${device.id}`;
      if (device.backend === 'user') parts.netdevs.push({ type: 'user', id: netdev });
      else if (device.backend === 'tap') {
        if (device.tapName === undefined) throw errors.invalidConfig([{ path: ['device', 'tapName'], message: 'a tap device needs tapName' }]);
        parts.netdevs.push({ type: 'tap', id: netdev, ifname: device.tapName, script: 'no', downscript: 'no' });
      } else throw errors.notSupported('device/add', 'vhost-user net needs shared guest memory, which this plugin does not set up');
      parts.devices.push({
        driver: driver('virtio-net'),
        id,
        netdev,
        ...opt('mac', device.mac),
        ...opt('host_mtu', device.mtu),
        ...onBus,
      });
      return parts;
    }
    case 'vsock':
      parts.devices.push({ driver: driver('vhost-vsock'), id, 'guest-cid': device.guestCid, ...onBus });
      return parts;
    case 'rng': {
      const obj = `rng-${device.id}`;
      parts.objects.push({ 'qom-type': 'rng-random', id: obj, filename: device.source });
      parts.devices.push({ driver: driver('virtio-rng'), id, rng: obj, ...onBus });
      return parts;
    }
    case 'memory': {
      const obj = `mem-${device.id}`;
      parts.objects.push({ 'qom-type': 'memory-backend-ram', id: obj, size: device.sizeMiB * 1024 * 1024 });
      parts.devices.push({ driver: 'pc-dimm', id, memdev: obj });
      return parts;
    }
    default:
      throw errors.notSupported('device/add', `device type ${device.type} is not supported on ${machine}`);
  }
}

/** Backends to delete after DEVICE_DELETED, in the reverse order of creation. */
export function backendCleanup(parts: QemuParts): { command: string; args: Record<string, string> }[] {
  const out: { command: string; args: Record<string, string> }[] = [];
  for (const n of parts.netdevs) out.push({ command: 'netdev_del', args: { id: String(n.id) } });
  for (const b of parts.blockdevs) out.push({ command: 'blockdev-del', args: { 'node-name': String(b['node-name']) } });
  for (const o of parts.objects) out.push({ command: 'object-del', args: { id: String(o.id) } });
  return out;
}
