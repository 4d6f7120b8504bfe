import { ErrorData, errorCodeName } from 'hvplug/protocol';
import type { WireMonitor } from './wire-monitor.js';

/** An error answer as the plugin sent it: the host replaces data it cannot read, so checks quote this. */
export interface SentError {
  code: unknown;
  message: unknown;
  data: unknown;
  /** What is wrong with data for the error's code, `path: problem` each; empty when it fits. */
  dataProblems: string[];
}

/** The last error answer process `tag` gave to `method` since record `from`. */
export function sentError(wire: WireMonitor, tag: string, method: string, from: number): SentError | undefined {
  let found: SentError | undefined;
  for (const r of wire.records.slice(from)) {
    if (r.tag !== tag || r.direction !== 'receive' || r.message.method !== undefined || !('error' in r.message)) continue;
    if (wire.requestOf(tag, r.message.id)?.method !== method) continue;
    const e = (r.message.error ?? {}) as { code?: unknown; message?: unknown; data?: unknown };
    const name = typeof e.code === 'number' ? errorCodeName(e.code) : undefined;
    const schema = name && Object.hasOwn(ErrorData, name) ? ErrorData[name as keyof typeof ErrorData] : undefined;
    const parsed = schema?.safeParse(e.data);
    const dataProblems = parsed && !parsed.success ? parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(data)'}: ${i.message}`) : [];
    found = { code: e.code, message: e.message, data: e.data, dataProblems };
  }
  return found;
}

/** `its data breaks the error's schema (issues.0.path: ...); data as sent: {...}`, for a check's message. */
export function describeSentData(e: SentError | undefined): string {
  if (!e) return 'no error answer found on the wire';
  const problems = e.dataProblems.length ? `its data breaks the error's schema (${e.dataProblems.join('; ')}); ` : '';
  return `${problems}data as sent: ${JSON.stringify(e.data)}`;
}
