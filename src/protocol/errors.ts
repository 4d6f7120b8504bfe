// zod/mini through a namespace import: esbuild keeps only the zod a plugin uses (see devices.ts).
import * as z from 'zod/mini';
import './locale.js';

/**
 * Error codes on the wire. JSON-RPC's own codes, plus an application range (-31000..-31099) that sits
 * outside the JSON-RPC reserved range (-32768..-32000) and away from vscode-jsonrpc's LSP codes.
 */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  NotSupported: -31001,
  VmNotFound: -31002,
  InvalidState: -31003,
  AlreadyExists: -31004,
  InvalidConfig: -31005,
  Timeout: -31006,
  Cancelled: -31007,
  VmmFailure: -31008,
  ResourceExhausted: -31009,
  ProtocolVersionMismatch: -31010,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;
export type ErrorCodeValue = (typeof ErrorCode)[ErrorCodeName];

const byValue = new Map<number, ErrorCodeName>(
  (Object.entries(ErrorCode) as [ErrorCodeName, number][]).map(([k, v]) => [v, k]),
);

export function errorCodeName(code: number): ErrorCodeName | undefined {
  return byValue.get(code);
}

/** One zod issue, flattened so it survives JSON and reads well in a message. */
export const Issue = z.object({ path: z.array(z.union([z.string(), z.number()])), message: z.string() });
export type Issue = z.infer<typeof Issue>;

/** The `data` member each application error carries; the host parses it to build typed errors. */
export const ErrorData = {
  InvalidParams: z.object({ method: z.string(), issues: z.array(Issue) }),
  InvalidConfig: z.object({ issues: z.array(Issue) }),
  InvalidState: z.object({ vmId: z.string(), current: z.string(), required: z.array(z.string()) }),
  VmNotFound: z.object({ vmId: z.string() }),
  AlreadyExists: z.object({ id: z.string() }),
  NotSupported: z.object({ method: z.string(), reason: z.string() }),
  VmmFailure: z.object({ vmmMessage: z.string(), vmmCode: z.optional(z.union([z.string(), z.number()])) }),
  ProtocolVersionMismatch: z.object({ host: z.array(z.string()), plugin: z.array(z.string()) }),
  // The next three were published without data: it MAY still be absent, so a plugin written against the
  // older text stays conformant; when present it is this. The SDK always sends it.
  /** The call was cancelled ($/cancelRequest, or the host's deadline passed and it cancelled). */
  Cancelled: z.optional(z.object({ method: z.string() })),
  /** A deadline of the plugin's own passed (a VMM that did not answer): how long it waited, when it knows. */
  Timeout: z.optional(z.object({ method: z.string(), timeoutMs: z.optional(z.number().check(z.nonnegative())) })),
  /** A limit was reached (slots, ports, memory ceiling, one device of a kind): which, in words. */
  ResourceExhausted: z.optional(z.object({ method: z.string(), reason: z.string() })),
} as const;

/**
 * The data of the errors the SDK can complete by itself, knowing only the call: a handler that throws
 * Cancelled, Timeout or ResourceExhausted without data still answers with well-formed data.
 */
export function defaultErrorData(code: ErrorCodeName, method: string, message: string): Record<string, unknown> | undefined {
  switch (code) {
    case 'Cancelled':
    case 'Timeout':
      return { method };
    case 'ResourceExhausted':
      return { method, reason: message };
    default:
      return undefined;
  }
}

/** Turns zod issues into the wire form. */
/**
 * The most issues kept of one error; the rest are counted in one last issue at the root (MORE_ISSUES). A list whose
 * every item is wrong has an issue per item, and an error carries its issues over the wire and into logs.
 */
export const MAX_ISSUES = 100;
/** The most issues an error's message spells out; the rest are counted. */
const SPELLED_ISSUES = 10;
const MORE_ISSUES = /^and ([\d,]+) more issues$/;

export function toIssues(error: z.core.$ZodError): Issue[] {
  const kept: Issue[] = error.issues.slice(0, MAX_ISSUES).map((i) => ({
    path: i.path.map((p) => (typeof p === 'symbol' ? String(p) : p)),
    message: i.message,
  }));
  const more = error.issues.length - kept.length;
  if (more > 0) kept.push({ path: [], message: `and ${more.toLocaleString('en')} more issues` });
  return kept;
}

export function formatIssues(issues: readonly Issue[]): string {
  const last = issues.at(-1);
  const counted = last && last.path.length === 0 ? MORE_ISSUES.exec(last.message) : null;
  const listed = counted ? issues.slice(0, -1) : issues;
  const spelled = listed.slice(0, SPELLED_ISSUES).map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
  const more = listed.length - spelled.length + (counted ? Number(counted[1]?.replaceAll(',', '')) : 0);
  return more > 0 ? `${spelled.join('; ')}; … and ${more.toLocaleString('en')} more` : spelled.join('; ');
}
