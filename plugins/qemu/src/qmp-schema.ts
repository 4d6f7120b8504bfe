// zod schemas of the QMP wire messages (docs/interop/qmp-spec.txt) and of the results of the commands
// hvplug uses, checked against QEMU 7.2's QAPI schema. Every line QEMU sends is parsed with these, so
// a QEMU that answers differently fails loudly at the boundary rather than deep in the plugin.
import { JsonValue } from 'hvplug/protocol';
import * as z from 'zod/mini';

export const QmpGreeting = z.object({
  QMP: z.object({
    version: z.object({
      qemu: z.object({ major: z.int(), minor: z.int(), micro: z.int() }),
      package: z.string(),
    }),
    capabilities: z.array(z.string()),
  }),
});
export type QmpGreeting = z.output<typeof QmpGreeting>;

/** QEMU echoes the id of the command as given; hvplug only sends numbers. */
const Id = z.optional(JsonValue);

export const QmpReturnMessage = z.object({ return: JsonValue, id: Id });
export const QmpErrorMessage = z.object({ error: z.object({ class: z.string(), desc: z.string() }), id: Id });
export const QmpEventMessage = z.object({
  event: z.string(),
  data: z._default(z.record(z.string(), JsonValue), {}),
  timestamp: z.object({ seconds: z.number(), microseconds: z.number() }),
});
export type QmpEvent = z.output<typeof QmpEventMessage>;

export type QmpMessage =
  | { readonly kind: 'greeting'; readonly greeting: QmpGreeting }
  | { readonly kind: 'return'; readonly id: unknown; readonly value: unknown }
  | { readonly kind: 'error'; readonly id: unknown; readonly errorClass: string; readonly desc: string }
  | { readonly kind: 'event'; readonly event: QmpEvent };

export type ParsedLine = QmpMessage | { readonly kind: 'invalid'; readonly reason: string };

function issues(e: z.core.$ZodError): string {
  return e.issues.map((i) => `${i.path.join('.') || '(message)'}: ${i.message}`).join('; ');
}

/** Classifies one line by its distinguishing member, then checks its shape. */
export function parseQmpLine(line: string): ParsedLine {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return { kind: 'invalid', reason: `not JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { kind: 'invalid', reason: 'not a JSON object' };
  if ('QMP' in value) {
    const r = QmpGreeting.safeParse(value);
    return r.success ? { kind: 'greeting', greeting: r.data } : { kind: 'invalid', reason: `greeting: ${issues(r.error)}` };
  }
  if ('event' in value) {
    const r = QmpEventMessage.safeParse(value);
    return r.success ? { kind: 'event', event: r.data } : { kind: 'invalid', reason: `event: ${issues(r.error)}` };
  }
  if ('error' in value) {
    const r = QmpErrorMessage.safeParse(value);
    return r.success
      ? { kind: 'error', id: r.data.id, errorClass: r.data.error.class, desc: r.data.error.desc }
      : { kind: 'invalid', reason: `error response: ${issues(r.error)}` };
  }
  if ('return' in value) {
    const r = QmpReturnMessage.safeParse(value);
    return r.success ? { kind: 'return', id: r.data.id, value: r.data.return } : { kind: 'invalid', reason: `return: ${issues(r.error)}` };
  }
  return { kind: 'invalid', reason: 'neither greeting, return, error nor event' };
}

// ---- command results -------------------------------------------------------------------------

const Empty = z.object({});

export const StatusInfo = z.object({ running: z.boolean(), status: z.string(), singlestep: z.optional(z.boolean()) });

export const CpuInstanceProperties = z.object({
  'node-id': z.optional(z.int()),
  'socket-id': z.optional(z.int()),
  'die-id': z.optional(z.int()),
  'cluster-id': z.optional(z.int()),
  'core-id': z.optional(z.int()),
  'thread-id': z.optional(z.int()),
});
export type CpuInstanceProperties = z.output<typeof CpuInstanceProperties>;

export const HotpluggableCpu = z.object({
  type: z.string(),
  'vcpus-count': z.int(),
  props: CpuInstanceProperties,
  /** The QOM path of the plugged CPU; absent for a free slot. */
  'qom-path': z.optional(z.string()),
});
export type HotpluggableCpu = z.output<typeof HotpluggableCpu>;

export const CpuInfoFast = z.object({
  'cpu-index': z.int(),
  'qom-path': z.string(),
  'thread-id': z.int(),
  props: z.optional(CpuInstanceProperties),
  target: z.string(),
});
export type CpuInfoFast = z.output<typeof CpuInfoFast>;

export const MigrationInfo = z.object({
  /** none, setup, cancelling, cancelled, active, postcopy-*, completed, failed, device, ... */
  status: z.optional(z.string()),
  'error-desc': z.optional(z.string()),
  'total-time': z.optional(z.number()),
  /** ms the guest ran nowhere, on a completed live migration (the source's view). */
  downtime: z.optional(z.number()),
  ram: z.optional(z.looseObject({ transferred: z.number(), total: z.number() })),
  /** Where a destination under migrate-incoming listens (the port the kernel chose for tcp:<host>:0). */
  'socket-address': z.optional(z.array(z.looseObject({ type: z.string(), port: z.optional(z.string()) }))),
});
export type MigrationInfo = z.output<typeof MigrationInfo>;

export const VersionInfo = z.object({
  qemu: z.object({ major: z.int(), minor: z.int(), micro: z.int() }),
  package: z.string(),
});

export const MemoryDeviceInfo = z.object({
  type: z.string(),
  data: z.looseObject({ id: z.optional(z.string()), size: z.optional(z.number()), memdev: z.optional(z.string()) }),
});

export const MemorySizeSummary = z.object({ 'base-memory': z.number(), 'plugged-memory': z.optional(z.number()) });

/** Result schemas of the commands hvplug calls; others go through QmpClient.execute untyped. */
export const QMP_RESULTS = {
  qmp_capabilities: Empty,
  'query-status': StatusInfo,
  'query-version': VersionInfo,
  'query-hotpluggable-cpus': z.array(HotpluggableCpu),
  'query-cpus-fast': z.array(CpuInfoFast),
  'query-migrate': MigrationInfo,
  'query-memory-devices': z.array(MemoryDeviceInfo),
  'query-memory-size-summary': MemorySizeSummary,
  cont: Empty,
  stop: Empty,
  quit: Empty,
  system_powerdown: Empty,
  system_reset: Empty,
  device_add: Empty,
  device_del: Empty,
  'blockdev-add': Empty,
  'blockdev-del': Empty,
  netdev_add: Empty,
  netdev_del: Empty,
  'object-add': Empty,
  'object-del': Empty,
  migrate: Empty,
  'migrate-incoming': Empty,
  'migrate-set-capabilities': Empty,
  migrate_cancel: Empty,
} as const;

export type KnownQmpCommand = keyof typeof QMP_RESULTS;
export type QmpResult<C extends KnownQmpCommand> = z.output<(typeof QMP_RESULTS)[C]>;

// ---- event data ------------------------------------------------------------------------------

export const QMP_EVENTS = {
  SHUTDOWN: z.object({ guest: z.boolean(), reason: z.string() }),
  STOP: z.object({}),
  RESUME: z.object({}),
  RESET: z.object({ guest: z.boolean(), reason: z.string() }),
  POWERDOWN: z.object({}),
  DEVICE_DELETED: z.object({ device: z.optional(z.string()), path: z.string() }),
  MIGRATION: z.object({ status: z.string() }),
  GUEST_PANICKED: z.looseObject({ action: z.string() }),
} as const;

export type KnownQmpEvent = keyof typeof QMP_EVENTS;
export type QmpEventData<E extends KnownQmpEvent> = z.output<(typeof QMP_EVENTS)[E]>;

/** The event's data typed, when `ev` is a `name` event of the expected shape; otherwise undefined. */
export function eventData<E extends KnownQmpEvent>(ev: QmpEvent, name: E): QmpEventData<E> | undefined {
  if (ev.event !== name) return undefined;
  const r = QMP_EVENTS[name].safeParse(ev.data);
  // TypeScript does not correlate QMP_EVENTS[E]'s output with QmpEventData<E>; they are the same type.
  return r.success ? (r.data as QmpEventData<E>) : undefined;
}
