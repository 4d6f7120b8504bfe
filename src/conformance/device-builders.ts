import type { DeviceInput, DeviceType, NetBackend } from 'hvplug/protocol';

export type DeviceOf<T extends DeviceType> = Extract<DeviceInput, { type: T }>;

/** What a device builder needs from its check: real files and sockets for the device to point at. */
export interface DeviceNeeds {
  /** A raw disk image of `bytes` bytes, removed with the check. */
  imageFile(name: string, bytes: number): Promise<string>;
  /** A listening unix socket standing in for a vhost-user backend, closed with the check. */
  socket(name: string): Promise<string>;
  /** A directory, removed with the check. */
  directory(name: string): Promise<string>;
  /** A path in the check's directory that does not exist yet. */
  path(name: string): string;
  /** A vsock CID no other VM of the run uses. */
  cid(): number;
  /** The net backend to build net devices with: one the plugin declares. */
  netBackend(): NetBackend;
}

async function netDevice(id: string, n: DeviceNeeds): Promise<DeviceOf<'net'>> {
  const common = { type: 'net', id, mac: '52:54:00:12:34:56', mtu: 1500 } as const;
  switch (n.netBackend()) {
    case 'user':
      return { ...common, backend: 'user' };
    case 'vhost-user':
      return { ...common, backend: 'vhost-user', socketPath: await n.socket(`${id}.sock`) };
    case 'tap':
      // Interface names are host-wide and at most 15 characters: the CID counter keeps them apart.
      return { ...common, backend: 'tap', tapName: `hvplug${n.cid()}` };
  }
}

/**
 * A valid device of every type, keyed by type so that adding a type to the protocol without teaching
 * the suite to build one fails the typecheck.
 */
export const DEVICE_BUILDERS: { [T in DeviceType]: (id: string, needs: DeviceNeeds) => Promise<DeviceOf<T>> } = {
  block: async (id, n) => ({ type: 'block', id, path: await n.imageFile(`${id}.img`, 1 << 20), format: 'raw', serial: id.slice(0, 20) }),
  net: netDevice,
  vsock: async (id, n) => ({ type: 'vsock', id, guestCid: n.cid() }),
  'virtio-fs': async (id, n) => ({
    type: 'virtio-fs',
    id,
    tag: id,
    socketPath: await n.socket(`${id}.sock`),
    sharedDir: await n.directory(`${id}-shared`),
  }),
  // No assignable PCI device exists here; a directory stands where its sysfs node would be.
  vfio: async (id, n) => ({ type: 'vfio', id, hostPath: await n.directory(`${id}-pci`) }),
  'vhost-user': async (id, n) => ({ type: 'vhost-user', id, kind: 'net', socketPath: await n.socket(`${id}.sock`) }),
  serial: async (id, n) => ({ type: 'serial', id, mode: 'file', path: n.path(`${id}.log`) }),
  rng: async (id) => ({ type: 'rng', id, source: '/dev/urandom' }),
  memory: async (id) => ({ type: 'memory', id, sizeMiB: 128 }),
  cpu: async (id) => ({ type: 'cpu', id }),
};
