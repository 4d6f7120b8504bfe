// The opaque state handed to the host after every change and given back in vm/recover to a plugin
// process that never saw the VM: enough to find the QEMU again (pid, runtime dir, QMP socket; attachQemu
// checks the pid really is that QEMU) and to answer for the VM as before (launch facts, devices).
// A namespace import lets esbuild keep only the zod a plugin uses (`import { z }` pulls in all of it, locales too).
import * as z from 'zod';
import { stateCodec } from 'hvplug/plugin-sdk';
import { AbsPath, Device, isJsonValue, VmStatus } from 'hvplug/protocol';
import { MACHINE_TYPES, type QemuJsonObject } from './cmdline.js';

export type { Json } from 'hvplug/protocol';

/** What QEMU is launched with, fixed at create: a restore re-launches with the same. */
export const LaunchInfo = z.object({
  machine: z.enum(MACHINE_TYPES),
  accel: z.enum(['kvm', 'tcg']),
  accelReason: z.string(),
  kernel: AbsPath,
  initrd: z.optional(AbsPath),
  cmdline: z.string(),
  vcpusBoot: z.number().int().positive(),
  vcpusMax: z.number().int().positive(),
  memory: z.object({ sizeMiB: z.number().int().positive(), maxMiB: z.number().int().positive().optional(), slots: z.number().int().nonnegative().optional() }),
  hotplugRootPorts: z.number().int().nonnegative(),
  cpuModel: z.string().optional(),
  extraArgs: z.array(z.string()),
});
export type LaunchInfo = z.infer<typeof LaunchInfo>;

// What a device became in QEMU (kept for restore): QEMU itself checks the objects when they are used again.
const QemuObject = z.custom<QemuJsonObject>((v) => isJsonValue(v) && typeof v === 'object' && v !== null && !Array.isArray(v), 'must be a JSON object');
const QemuObjects = z.array(QemuObject);

const ExitRecord = z.object({ code: z.number().int().nullable(), signal: z.string().nullable(), reason: z.string() });
export type ExitRecord = z.infer<typeof ExitRecord>;

/** A device as attached (device-map.ts Attached), as the state and a snapshot's sidecar keep it. */
const AttachedRecord = z.object({
  device: Device,
  parts: z.object({ objects: QemuObjects, blockdevs: QemuObjects, netdevs: QemuObjects, devices: QemuObjects }),
  port: z.number().int().nonnegative().optional(),
});

/** A snapshot's sidecar (snapshot.ts): what the QEMU that restores it must be launched with. */
export const SnapshotSidecar = z.object({
  launch: LaunchInfo,
  attached: z.array(AttachedRecord),
  vcpus: z.number().int().nonnegative(),
  memoryMiB: z.number().int().nonnegative(),
});

/**
 * The state: where the QEMU is (pid, runtime dir, QMP socket relative to it, which keeps the path under
 * sun_path's 107 bytes; attachQemu checks the pid really is that QEMU) and what it is (launch facts, the
 * devices attached and the QEMU objects they became).
 */
export const vmState = stateCodec('hvplug-qemu/vm-state', 1, {
  /** A live VM (running or paused) is written `running` (stateStatus): vm/recover asks QEMU which. */
  status: VmStatus,
  runDir: AbsPath,
  qmpSocket: z.string().min(1),
  consoleLog: AbsPath,
  /** The serial console's unix socket (console "socket"), relative to runDir as qmpSocket is; the log is kept beside it. */
  consoleSocket: z.string().min(1).optional(),
  pid: z.number().int().positive().nullable(),
  launch: LaunchInfo,
  vcpus: z.number().int().nonnegative(),
  memoryMiB: z.number().int().nonnegative(),
  attached: z.array(AttachedRecord),
  startedAt: z.number().nullable(),
  lastExit: ExitRecord.nullable(),
});
export type VmState = ReturnType<typeof vmState.decode>;
