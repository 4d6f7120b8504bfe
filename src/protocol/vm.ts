// zod/mini through a namespace import: esbuild keeps only the zod a plugin uses (see devices.ts).
import * as z from 'zod/mini';
import './locale.js';
import { AbsPath, Device, Id } from './devices.js';
import { JsonValue } from './json.js';

/** A count of vCPUs, and a memory size in MiB (a guest needs 16 at least). */
const VcpuCount = z.number().check(z.int(), z.minimum(1), z.maximum(512));
const MemoryMiB = z.number().check(z.int(), z.minimum(16));

export const VmConfig = z.object({
  name: z.optional(z.string().check(z.maxLength(128))),
  kernel: z.optional(z.object({ path: AbsPath, cmdline: z._default(z.string(), '') })),
  initrd: z.optional(AbsPath),
  /** A bootable disk image, as an alternative to a direct kernel boot. */
  disk: z.optional(AbsPath),
  firmware: z.optional(AbsPath),
  vcpus: z._default(
    z
      .object({ boot: VcpuCount, max: z.optional(VcpuCount) })
      .check(z.refine((v) => v.max === undefined || v.max >= v.boot, { message: 'max must be >= boot', path: ['max'] })),
    { boot: 1 },
  ),
  memory: z._default(
    z
      .object({
        sizeMiB: MemoryMiB,
        maxMiB: z.optional(MemoryMiB),
        slots: z.optional(z.number().check(z.int(), z.minimum(0), z.maximum(256))),
        hugepages: z._default(z.boolean(), false),
        prealloc: z._default(z.boolean(), false),
      })
      .check(z.refine((m) => m.maxMiB === undefined || m.maxMiB >= m.sizeMiB, { message: 'maxMiB must be >= sizeMiB', path: ['maxMiB'] })),
    { sizeMiB: 256, hugepages: false, prealloc: false },
  ),
  /** Plugin-specific machine type, e.g. q35 or microvm for QEMU. */
  machine: z.optional(z.string().check(z.maxLength(64))),
  devices: z._default(z.array(Device), []),
  console: z._default(z.enum(['none', 'log', 'socket', 'pty']), 'log'),
  annotations: z._default(z.record(z.string(), z.string()), {}),
  /** The plugin's own section, validated against the JSON Schema the plugin declares at initialize. */
  plugin: z._default(z.record(z.string(), JsonValue), {}),
});
export type VmConfig = z.output<typeof VmConfig>;
export type VmConfigInput = z.input<typeof VmConfig>;

/** A part of a VM config, every field optional: a plugin spec's defaults, a config file given on the command line. */
export const PartialVmConfig = z.partial(VmConfig);

export const VM_STATUSES = ['created', 'running', 'paused', 'stopped', 'crashed', 'lost'] as const;
export const VmStatus = z.enum(VM_STATUSES);
export type VmStatus = z.infer<typeof VmStatus>;

/** Opaque to the host: whatever the plugin needs to re-attach to the VM later (vm/recover). */
export const PluginState = JsonValue;

/** What every call that changes a VM's lifecycle answers: the new status and the plugin's state. */
export const VmResult = z.object({ status: VmStatus, state: z.optional(PluginState) });
export type VmResult = z.infer<typeof VmResult>;

/** `time` is published as a JSON Schema date-time (RFC 3339, offset included), the form the conformance suite requires. */
const EventTime = z.string().register(z.globalRegistry, { format: 'date-time' });
const EventBase = { vmId: Id, seq: z.number().check(z.int(), z.nonnegative()), time: EventTime };

export const VmEvent = z.discriminatedUnion('type', [
  z.object({ ...EventBase, type: z.literal('created') }),
  z.object({ ...EventBase, type: z.literal('running') }),
  z.object({ ...EventBase, type: z.literal('paused') }),
  z.object({ ...EventBase, type: z.literal('resumed') }),
  z.object({ ...EventBase, type: z.literal('stopped') }),
  z.object({
    ...EventBase,
    type: z.literal('exited'),
    code: z.nullable(z.number().check(z.int())),
    signal: z.nullable(z.string()),
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
