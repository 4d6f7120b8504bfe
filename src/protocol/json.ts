// A namespace import lets esbuild keep only the zod a plugin uses (`import { z }` pulls in all of it, locales too).
import * as z from 'zod';

export type Json = z.core.util.JSONType;

/**
 * Is `value` a JSON value: null, a boolean, a finite number, a string, or arrays and plain objects of
 * them, without cycles? Walked with a stack, so a deep state costs no call depth.
 */
export function isJsonValue(value: unknown): value is Json {
  const stack: unknown[] = [value];
  const seen = new Set<object>();
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v === 'string' || typeof v === 'boolean') continue;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return false;
      continue;
    }
    if (typeof v !== 'object' || seen.has(v)) return false;
    seen.add(v);
    if (Array.isArray(v)) {
      for (const e of v as unknown[]) stack.push(e);
      continue;
    }
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return false;
    for (const k of Object.keys(v)) stack.push((v as Record<string, unknown>)[k]);
  }
  return true;
}

/**
 * Any JSON value, checked in place. zod's own z.json() is a recursive union that copies as it goes and was
 * most of the cost of every call carrying a plugin state (8× slower measured; more in a fresh process).
 */
export const JsonValue = z.custom<Json>(isJsonValue, {
  message: 'must be a JSON value (null, boolean, finite number, string, or arrays and plain objects of them)',
});
