// A namespace import lets esbuild keep only the zod a plugin uses (`import { z }` pulls in all of it, locales too).
import * as z from 'zod';

/** Identifiers end up in file names and QEMU ids, so they are kept to a safe alphabet. */
export const Id = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ - and start alphanumeric');

export const AbsPath = z.string().regex(/^\//, 'must be an absolute path');

export const RateLimit = z
  .object({
    bandwidthBytesPerSec: z.number().int().positive().optional(),
    opsPerSec: z.number().int().positive().optional(),
    burstBytes: z.number().int().positive().optional(),
  })
  .refine((r) => r.bandwidthBytesPerSec !== undefined || r.opsPerSec !== undefined, {
    message: 'a rate limit needs bandwidthBytesPerSec or opsPerSec',
  });

const MacAddress = z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i, 'must be a MAC address like 52:54:00:12:34:56');

export const BlockDevice = z.object({
  type: z.literal('block'),
  id: Id,
  path: AbsPath,
  format: z.enum(['raw', 'qcow2']).default('raw'),
  readOnly: z.boolean().default(false),
  serial: z.string().max(20).optional(),
  rateLimit: RateLimit.optional(),
});

export const NET_BACKENDS = ['user', 'tap', 'vhost-user'] as const;
export const NetBackend = z.enum(NET_BACKENDS);
export type NetBackend = z.infer<typeof NetBackend>;

export const NetDevice = z.object({
  type: z.literal('net'),
  id: Id,
  backend: NetBackend,
  /** tap: the host interface name; vhost-user: the backend's socket. */
  tapName: z.string().max(15).optional(),
  socketPath: AbsPath.optional(),
  mac: MacAddress.optional(),
  mtu: z.number().int().min(68).max(65535).optional(),
  queues: z.number().int().min(1).max(64).default(1),
  rateLimit: RateLimit.optional(),
});

export const VsockDevice = z.object({
  type: z.literal('vsock'),
  id: Id,
  guestCid: z.number().int().min(3).max(0xffffffff - 1),
  socketPath: AbsPath.optional(),
});

export const VirtioFsDevice = z.object({
  type: z.literal('virtio-fs'),
  id: Id,
  tag: z.string().min(1).max(36),
  socketPath: AbsPath,
  sharedDir: AbsPath.optional(),
});

export const VfioDevice = z.object({
  type: z.literal('vfio'),
  id: Id,
  /** sysfs path of the host device, e.g. /sys/bus/pci/devices/0000:01:00.0 */
  hostPath: AbsPath,
});

export const VhostUserDevice = z.object({
  type: z.literal('vhost-user'),
  id: Id,
  kind: z.enum(['blk', 'net', 'fs', 'scsi']),
  socketPath: AbsPath,
});

export const SerialDevice = z.object({
  type: z.literal('serial'),
  id: Id,
  mode: z.enum(['null', 'file', 'socket', 'pty']),
  path: AbsPath.optional(),
});

export const RngDevice = z.object({
  type: z.literal('rng'),
  id: Id,
  source: AbsPath.default('/dev/urandom'),
});

export const MemoryDevice = z.object({
  type: z.literal('memory'),
  id: Id,
  sizeMiB: z.number().int().positive(),
});

export const CpuDevice = z.object({
  type: z.literal('cpu'),
  id: Id,
});

export const Device = z.discriminatedUnion('type', [
  BlockDevice,
  NetDevice,
  VsockDevice,
  VirtioFsDevice,
  VfioDevice,
  VhostUserDevice,
  SerialDevice,
  RngDevice,
  MemoryDevice,
  CpuDevice,
]);
export type Device = z.output<typeof Device>;
export type DeviceInput = z.input<typeof Device>;

export const DEVICE_TYPES = [
  'block',
  'net',
  'vsock',
  'virtio-fs',
  'vfio',
  'vhost-user',
  'serial',
  'rng',
  'memory',
  'cpu',
] as const;
export const DeviceType = z.enum(DEVICE_TYPES);
export type DeviceType = z.infer<typeof DeviceType>;
