import { isMethodName, methodDef } from 'hvplug/protocol';

/**
 * Deadline of a method the table does not list: rpc.discover, and names sent on purpose to be refused.
 * Both are answered at once by any plugin that answers at all.
 */
export const UNLISTED_METHOD_MS = 10_000;

/**
 * The deadline of one call the suite makes: `override` (--call-timeout) when given, else the method's own
 * from the method table, the one source of truth for how long a method may take. null is the table's "no
 * deadline of its own" (vm/wait): the check's deadline still bounds the call.
 */
export function callDeadline(method: string, override: number | undefined): number | null {
  if (override !== undefined) return override;
  return isMethodName(method) ? methodDef(method).timeoutMs : UNLISTED_METHOD_MS;
}
