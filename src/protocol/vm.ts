// A namespace import lets esbuild keep only the zod a plugin uses (`import { z }` pulls in all of it, locales too).
import * as z from 'zod';
import { AbsPath, Device, Id } from './devices.js';
import { JsonValue } from './json.js';


export const VmConfig = z.object({
  name: z.string().max(128).optional(),
  kernel: z.object({ path: AbsPath, cmdline: z.string().default('') }).optional(),
  initrd: AbsPath.optional(),
  /** A bootable disk image, as an alternative to a direct kernel boot. */
  disk: AbsPath.optional(),
  firmware: AbsPath.optional(),
  vcpus: z
    .object({ boot: z.number().int().min(1).max(512), max: z.number().int().min(1).max(512).optional() })
    .refine((v) => v.max === undefined || v.max >= v.boot, { message: 'max must be >= boot', path: ['max'] })
    .default({ boot: 1 }),
  memory: z
    .object({
      sizeMiB: z.number().int().min(16),
      maxMiB: z.number().int().min(16).optional(),
      slots: z.number().int().min(0).max(256).optional(),
      hugepages: z.boolean().default(false),
      prealloc: z.boolean().default(false),
    })
    .refine((m) => m.maxMiB === undefined || m.maxMiB >= m.sizeMiB, { message: 'maxMiB must be >= sizeMiB', path: ['maxMiB'] })
    .default({ sizeMiB: 256, hugepages: false, prealloc: false }),
  /** Plugin-specific machine type, e.g. q35 or microvm for QEMU. */
  machine: z.string().max(64).optional(),
  devices: z.array(Device).default([]),
  console: z.enum(['none', 'log', 'socket', 'pty']).default('log'),
  annotations: z.record(z.string(), z.string()).default({}),
  /** The plugin's own section, validated against the JSON Schema the plugin declares at initialize. */
  plugin: z.record(z.string(), JsonValue).default({}),
});
export type VmConfig = z.output<typeof VmConfig>;
export type VmConfigInput = z.input<typeof VmConfig>;

export const VM_STATUSES = ['created', 'running', 'paused', 'stopped', 'crashed', 'lost'] as const;
export const VmStatus = z.enum(VM_STATUSES);
export type VmStatus = z.infer<typeof VmStatus>;

/** Opaque to the host: whatever the plugin needs to re-attach to the VM later (vm/recover). */
export const PluginState = JsonValue;

/** What every call that changes a VM's lifecycle answers: the new status and the plugin's state. */
export const VmResult = z.object({ status: VmStatus, state: PluginState.optional() });
export type VmResult = z.infer<typeof VmResult>;

const EventBase = { vmId: Id, seq: z.number().int().nonnegative(), time: z.string() };

export const VmEvent = z.discriminatedUnion('type', [
  z.object({ ...EventBase, type: z.literal('created') }),
  z.object({ ...EventBase, type: z.literal('running') }),
  z.object({ ...EventBase, type: z.literal('paused') }),
  z.object({ ...EventBase, type: z.literal('resumed') }),
  z.object({ ...EventBase, type: z.literal('stopped') }),
  z.object({
    ...EventBase,
    type: z.literal('exited'),
    code: z.number().int().nullable(),
    signal: z.string().nullable(),
    reason: z.string(),
  }),
  z.object({ ...EventBase, type: z.literal('crashed'), reason: z.string() }),
  z.object({ ...EventBase, type: z.literal('device-added'), deviceId: Id }),
  z.object({ ...EventBase, type: z.literal('device-removed'), deviceId: Id }),
  z.object({ ...EventBase, type: z.literal('state'), state: PluginState }),
  /** Host-side: the VMM was gone when the plugin came back, or the plugin could not re-attach. */
  z.object({ ...EventBase, type: z.literal('lost'), reason: z.string() }),
  z.object({ ...EventBase, type: z.literal('recovered') }),
]);
export type VmEvent = z.infer<typeof VmEvent>;
export type VmEventType = VmEvent['type'];
