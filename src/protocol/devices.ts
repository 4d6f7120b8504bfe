// zod/mini, through a namespace import: esbuild keeps only the zod a plugin uses (zod's classic API, whose every
// schema method reaches all of it, cost each plugin and embedder ~2 MiB more).
import * as z from 'zod/mini';
import './locale.js';

/** Identifiers end up in file names and QEMU ids, so they are kept to a safe alphabet. */
export const Id = z
  .string()
  .check(z.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ - and start alphanumeric'));

export const AbsPath = z.string().check(z.regex(/^\//, 'must be an absolute path'));

const PositiveInt = z.number().check(z.int(), z.positive());

export const RateLimit = z
  .object({
    bandwidthBytesPerSec: z.optional(PositiveInt),
    opsPerSec: z.optional(PositiveInt),
    burstBytes: z.optional(PositiveInt),
  })
  .check(
    z.refine((r) => r.bandwidthBytesPerSec !== undefined || r.opsPerSec !== undefined, {
      message: 'a rate limit needs bandwidthBytesPerSec or opsPerSec',
    }),
  );

const MacAddress = z.string().check(z.regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i, 'must be a MAC address like 52:54:00:12:34:56'));

export const BlockDevice = z.object({
  type: z.literal('block'),
  id: Id,
  path: AbsPath,
  format: z._default(z.enum(['raw', 'qcow2']), 'raw'),
  readOnly: z._default(z.boolean(), false),
  serial: z.optional(z.string().check(z.maxLength(20))),
  rateLimit: z.optional(RateLimit),
});

export const NET_BACKENDS = ['user', 'tap', 'vhost-user'] as const;
export const NetBackend = z.enum(NET_BACKENDS);
export type NetBackend = z.infer<typeof NetBackend>;

export const NetDevice = z.object({
  type: z.literal('net'),
  id: Id,
  backend: NetBackend,
  /** tap: the host interface name; vhost-user: the backend's socket. */
  tapName: z.optional(z.string().check(z.maxLength(15))),
  socketPath: z.optional(AbsPath),
  mac: z.optional(MacAddress),
  mtu: z.optional(z.number().check(z.int(), z.minimum(68), z.maximum(65535))),
  queues: z._default(z.number().check(z.int(), z.minimum(1), z.maximum(64)), 1),
  rateLimit: z.optional(RateLimit),
});

export const VsockDevice = z.object({
  type: z.literal('vsock'),
  id: Id,
  guestCid: z.number().check(z.int(), z.minimum(3), z.maximum(0xffffffff - 1)),
  socketPath: z.optional(AbsPath),
});

export const VirtioFsDevice = z.object({
  type: z.literal('virtio-fs'),
  id: Id,
  tag: z.string().check(z.minLength(1), z.maxLength(36)),
  socketPath: AbsPath,
  sharedDir: z.optional(AbsPath),
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
  path: z.optional(AbsPath),
});

export const RngDevice = z.object({
  type: z.literal('rng'),
  id: Id,
  source: z._default(AbsPath, '/dev/urandom'),
});

export const MemoryDevice = z.object({
  type: z.literal('memory'),
  id: Id,
  sizeMiB: PositiveInt,
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
