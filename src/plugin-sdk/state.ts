// zod/mini through a namespace import: esbuild keeps only the zod a plugin uses (src/protocol/devices.ts says why).
import * as z from 'zod/mini';
import { toIssues, type Issue, type Json, type VmStatus } from 'hvplug/protocol';
import { errors } from './errors.js';

/**
 * A plugin's opaque VM state: what it hands the host with every change and gets back in vm/recover,
 * possibly in a process of another plugin version, possibly a blob some other plugin wrote. The blob is
 * the state's fields plus `format` and `version`; decoding checks those first, then the plugin's schema.
 */
export interface StateCodec<S> {
  /** The state as the host stores it: through JSON (what the host keeps is exactly this), stamped. */
  encode(state: S): Json;
  /** The state in a blob, or the issues with it, at paths under `state`. */
  safeDecode(raw: unknown): { ok: true; state: S } | { ok: false; issues: Issue[] };
  /** The state in a blob; InvalidParams for `method` (at `state.<path>`) when it is not one. */
  decode(raw: unknown, method: string): S;
}

/** `shape`'s fields are zod schemas, of zod's classic API or of zod/mini. */
export function stateCodec<Shape extends z.core.$ZodShape>(format: string, version: number, shape: Shape): StateCodec<z.output<z.ZodMiniObject<Shape>>> {
  type S = z.output<z.ZodMiniObject<Shape>>;
  const stamp = z.object({ format: z.literal(format), version: z.literal(version) });
  const fields = z.object(shape);
  const under = (issues: Issue[]): Issue[] => issues.map((i) => ({ ...i, path: ['state', ...i.path] }));
  const safeDecode = (raw: unknown): { ok: true; state: S } | { ok: false; issues: Issue[] } => {
    // A blob of another format or version is told as such, not as a list of fields that do not fit.
    const stamped = stamp.safeParse(raw);
    if (!stamped.success) {
      const seen = typeof raw === 'object' && raw !== null ? (raw as { format?: unknown; version?: unknown }) : {};
      const message = `is not a ${format} version ${version} state (format ${JSON.stringify(seen.format)}, version ${JSON.stringify(seen.version)})`;
      return { ok: false, issues: under([{ path: [], message }]) };
    }
    const parsed = fields.safeParse(raw);
    return parsed.success ? { ok: true, state: parsed.data } : { ok: false, issues: under(toIssues(parsed.error)) };
  };
  return {
    encode: (state) => JSON.parse(JSON.stringify({ format, version, ...state })) as Json,
    safeDecode,
    decode: (raw, method): S => {
      const r = safeDecode(raw);
      if (r.ok) return r.state;
      throw errors.invalidParams(method, r.issues);
    },
  };
}

/**
 * The status a plugin keeps in its opaque state: `running` for a live VM, running or paused. Which of the two it
 * is, vm/recover asks the VMM (the host's status of a VM is volatile: it does not survive a power loss, and a
 * re-attach asks the plugin). So a pause or resume leaves the state as it was, and the host writes the VM's
 * status alone instead of its durable record (fsync'd) for one.
 */
export function stateStatus(status: VmStatus): VmStatus {
  return status === 'paused' ? 'running' : status;
}
