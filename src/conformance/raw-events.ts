import { VmEvent } from 'hvplug/protocol';
import type { WireRecord } from './wire-monitor.js';

/** A vm/event as the plugin sent it, before the host's validation, which drops a malformed one. */
export interface RawEvent {
  record: WireRecord;
  params: Record<string, unknown>;
  /** The type and VM it claims, when those fields at least are strings. */
  type: string | undefined;
  vmId: string | undefined;
  /** What the host holds against it, field by field; empty when it parses. */
  problems: string[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A field's value as the plugin sent it, for a message: `missing` when absent. */
function shown(params: Record<string, unknown>, path: readonly PropertyKey[]): string {
  let v: unknown = params;
  for (const key of path) {
    if (!isObject(v) || !Object.hasOwn(v, key)) return 'missing';
    v = v[key as string];
  }
  return `sent ${JSON.stringify(v)}`;
}

/** Each problem as `field: what the schema wants (what was sent)`. */
export function eventProblems(params: unknown): string[] {
  if (!isObject(params)) return [`params are not an object: ${JSON.stringify(params)}`];
  const parsed = VmEvent.safeParse(params);
  if (parsed.success) return [];
  return parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(params)'}: ${i.message} (${shown(params, i.path)})`);
}

export function rawEventOf(r: WireRecord): RawEvent | undefined {
  if (r.direction !== 'receive' || r.message.method !== 'vm/event') return undefined;
  const params = isObject(r.message.params) ? r.message.params : {};
  return {
    record: r,
    params,
    type: typeof params.type === 'string' ? params.type : undefined,
    vmId: typeof params.vmId === 'string' ? params.vmId : undefined,
    problems: eventProblems(r.message.params),
  };
}

/** `exited event of VM x (seq 3, during events.guest-poweroff)`: where an event came from, for a message. */
export function describeRawEvent(e: RawEvent): string {
  return `${e.type ?? 'untyped'} event of VM ${e.vmId ?? '?'} (seq ${JSON.stringify(e.params.seq)}, during ${e.record.check})`;
}

/** An RFC 3339 date-time, as the protocol's `time` is: Date.parse alone also takes "Tue, 1 Dec 2026". */
export function isEventTime(time: unknown): boolean {
  return typeof time === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(time) && !Number.isNaN(Date.parse(time));
}
