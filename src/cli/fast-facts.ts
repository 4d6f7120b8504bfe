import { ErrorCode, METHOD_NAMES, methodDef, VM_STATUSES, type MethodName } from 'hvplug/protocol';
import { API_VERSION, CALL_REF_DECLINED_CODE, CALL_REF_METHODS, DAEMON_METHODS, lockPath, MAX_ANSWER_BYTES, MAX_REQUEST_BYTES } from '../daemon/api.js';
import { DEADLINE_MARGIN_MS, OWN_CALL_TIMEOUT_MS } from '../daemon/client.js';
import { HVPLUG_CODES } from '../daemon/errors.js';

/** The commands the fast path (fast.ts) runs through a daemon; every other command line goes to the full CLI. */
export const FAST_COMMANDS = ['pause', 'resume'] as const;
export type FastCommandName = (typeof FAST_COMMANDS)[number];

export interface FastMethod {
  readonly method: string;
  readonly timeoutMs: number | null;
}

/**
 * What the fast path knows of the method table and the daemon's API, taken from the modules that define them. Those
 * modules build zod schemas as they load, which is most of what the fast path saves: scripts/bundle-cli.mjs calls
 * fastFacts() at build time and writes the answer into dist/cli/fast.js, and tests hand it to runFast directly.
 */
export interface FastFacts {
  readonly apiVersion: number;
  /** The daemon's lock file, relative to the state directory. */
  readonly lockFile: string;
  readonly maxAnswerBytes: number;
  readonly maxRequestBytes: number;
  readonly ownCallTimeoutMs: number;
  readonly deadlineMarginMs: number;
  /** hvplug/callRef, the one request the fast path sends, and the code of its refusal (CALL_REF_DECLINED_CODE). */
  readonly callRef: string;
  readonly declinedCode: number;
  readonly commands: Readonly<Record<FastCommandName, FastMethod>>;
  readonly statuses: readonly string[];
  /** The `data.hvplug` codes of the daemon's errors (daemon/errors.ts), and the code of an error that is not hvplug's. */
  readonly hvplugCodes: readonly string[];
  readonly internalErrorCode: number;
  /** What a daemon that does not serve callRef (an older one) answers it. */
  readonly methodNotFoundCode: number;
}

/** The table's vm-scoped method behind a command (`pause` is the method whose shim name is pause). */
function vmMethod(api: FastCommandName): FastMethod {
  const found = METHOD_NAMES.filter((m) => methodDef(m).api === api && methodDef(m).scope === 'vm');
  if (found.length !== 1) throw new Error(`the method table has ${found.length} vm-scoped methods named ${api} on the shim, not one`);
  const method: MethodName = found[0]!;
  const def = methodDef(method);
  // The daemon's callRef makes the call, and checks its gate: only a method taking a vmId alone, gated on no device.
  if (!CALL_REF_METHODS.includes(method)) throw new Error(`${method} is not one hvplug/callRef sends: the fast path cannot send it`);
  return { method, timeoutMs: def.timeoutMs };
}

export function fastFacts(): FastFacts {
  return {
    apiVersion: API_VERSION,
    lockFile: lockPath(''),
    maxAnswerBytes: MAX_ANSWER_BYTES,
    maxRequestBytes: MAX_REQUEST_BYTES,
    ownCallTimeoutMs: OWN_CALL_TIMEOUT_MS,
    deadlineMarginMs: DEADLINE_MARGIN_MS,
    callRef: DAEMON_METHODS.callRef.name,
    declinedCode: CALL_REF_DECLINED_CODE,
    commands: { pause: vmMethod('pause'), resume: vmMethod('resume') },
    statuses: [...VM_STATUSES],
    hvplugCodes: [...HVPLUG_CODES],
    internalErrorCode: ErrorCode.InternalError,
    methodNotFoundCode: ErrorCode.MethodNotFound,
  };
}
