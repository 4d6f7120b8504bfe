// hvplug devices as Cloud Hypervisor device configs (openapi.yaml components.schemas), and what Cloud
// Hypervisor cannot do with them. The device keeps its hvplug id as the CH id, so vm.remove-device and
// the event monitor's device-removed name it the same way; hvplug ids never start with "_", so they
// cannot collide with the names CH generates (_disk0, _net1, ...) or with the plugin's own devices.
import type { Device } from 'hvplug/protocol';
import type { DeviceConfig, DiskConfig, FsConfig, NetConfig, VsockConfig } from './api-types.js';
import { inVmDir, type VmPaths } from './paths.js';

// A type, not an interface: only types are assignable to the schema's index signature.
export type RngBody = { src: string };

/** A device as one entry of a CH VmConfig list (or its single vsock / rng member) and its vm.add-* endpoint. */
export type ChDevice =
  | { readonly list: 'disks'; readonly body: DiskConfig }
  | { readonly list: 'net'; readonly body: NetConfig }
  | { readonly list: 'fs'; readonly body: FsConfig }
  | { readonly list: 'devices'; readonly body: DeviceConfig }
  | { readonly list: 'vsock'; readonly body: VsockConfig }
  | { readonly list: 'rng'; readonly body: RngBody };

type RateLimit = NonNullable<Extract<Device, { type: 'block' }>['rateLimit']>;

/** Token buckets that refill once a second: size = the per-second budget, burst only for bandwidth. */
function rateLimiter(r: RateLimit | undefined): DiskConfig['rate_limiter_config'] {
  if (!r) return undefined;
  return {
    bandwidth: r.bandwidthBytesPerSec === undefined ? undefined : { size: r.bandwidthBytesPerSec, refill_time: 1000, one_time_burst: r.burstBytes },
    ops: r.opsPerSec === undefined ? undefined : { size: r.opsPerSec, refill_time: 1000 },
  };
}

/** Why Cloud Hypervisor cannot take this device, or undefined when it can. */
export function deviceProblem(device: Device): string | undefined {
  switch (device.type) {
    case 'net':
      if (device.backend === 'user') return 'Cloud Hypervisor has no user-mode networking: use a tap or vhost-user backend';
      if (device.backend === 'vhost-user' && !device.socketPath) return 'a vhost-user net device needs socketPath';
      return undefined;
    case 'vhost-user':
      if (device.kind === 'fs') return 'a vhost-user fs backend is attached as a virtio-fs device (it needs a tag)';
      if (device.kind === 'scsi') return 'Cloud Hypervisor has no vhost-user-scsi device';
      return undefined;
    case 'serial':
      return 'Cloud Hypervisor has one serial port, set by the config\'s console, not a device';
    case 'memory':
      return 'Cloud Hypervisor adds memory with vm.resize (vm/resizeMemory), not as a device';
    case 'cpu':
      return 'Cloud Hypervisor adds vCPUs with vm.resize (vm/resizeVcpus), not as a device';
    default:
      return undefined;
  }
}

/** The CH config of a device the plugin accepts (deviceProblem answered undefined). */
export function toChDevice(device: Device, paths: VmPaths): ChDevice {
  const id = device.id;
  switch (device.type) {
    case 'block':
      return {
        list: 'disks',
        body: {
          id,
          path: device.path,
          readonly: device.readOnly,
          image_type: device.format === 'qcow2' ? 'Qcow2' : 'Raw',
          serial: device.serial,
          rate_limiter_config: rateLimiter(device.rateLimit),
        },
      };
    case 'net': {
      // CH counts queues one per direction: a queue pair is two.
      const common = { id, mac: device.mac, mtu: device.mtu, num_queues: device.queues * 2, rate_limiter_config: rateLimiter(device.rateLimit) };
      if (device.backend === 'vhost-user') return { list: 'net', body: { ...common, vhost_user: true, vhost_socket: device.socketPath, vhost_mode: 'Client' } };
      // Without a name CH creates the tap itself (which needs CAP_NET_ADMIN).
      return { list: 'net', body: { ...common, tap: device.tapName } };
    }
    case 'vsock':
      return { list: 'vsock', body: { id, cid: device.guestCid, socket: device.socketPath ?? inVmDir(paths, paths.userVsock) } };
    case 'virtio-fs':
      // sharedDir belongs to the virtiofsd serving socketPath; the VMM only connects to the socket.
      return { list: 'fs', body: { id, tag: device.tag, socket: device.socketPath, num_queues: 1, queue_size: 1024 } };
    case 'vfio':
      return { list: 'devices', body: { id, path: device.hostPath } };
    case 'vhost-user':
      if (device.kind === 'blk') return { list: 'disks', body: { id, vhost_user: true, vhost_socket: device.socketPath } };
      return { list: 'net', body: { id, vhost_user: true, vhost_socket: device.socketPath, vhost_mode: 'Client', num_queues: 2 } };
    case 'rng':
      // CH has exactly one entropy device and names it itself: the hvplug id is the plugin's to track.
      return { list: 'rng', body: { src: device.source } };
    default:
      throw new Error(`${device.type} devices are not mapped to Cloud Hypervisor (deviceProblem should have refused them)`);
  }
}
