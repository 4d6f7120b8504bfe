import type * as z from 'zod/mini';

// Without zod at run time: the CLI's fast path (src/cli/fast.ts) checks a plugin state with it, and loading zod's
// classic API is what it saves.

export type Json = z.core.util.JSONType;

/**
 * How deep a JSON value from a peer may nest (a scalar is 0 deep, `[]` 1, `[[]]` 2). Plugin state, config and
 * schemas are small documents; a peer's 100,000 nested arrays would pass JSON.parse (iterative in V8) and then
 * overflow the stack of the first JSON.stringify (the record write, the shim's comparison), about 7,000 levels
 * in. Refused at parse time, so that what is accepted can always be written back out.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Is `value` a JSON value: null, a boolean, a finite number, a string, or arrays and plain objects of
 * them, without cycles, nested at most MAX_JSON_DEPTH deep? Walked with a stack, so a deep value costs no call
 * depth, and the walk stops at the first level past the cap.
 */
export function isJsonValue(value: unknown): value is Json {
  // Two parallel stacks rather than a stack of pairs: no allocation per element.
  const stack: unknown[] = [value];
  const depths: number[] = [0];
  const seen = new Set<object>();
  while (stack.length > 0) {
    const v = stack.pop();
    const depth = depths.pop() as number;
    if (v === null || typeof v === 'string' || typeof v === 'boolean') continue;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return false;
      continue;
    }
    if (typeof v !== 'object' || seen.has(v) || depth >= MAX_JSON_DEPTH) return false;
    seen.add(v);
    if (Array.isArray(v)) {
      for (const e of v as unknown[]) {
        stack.push(e);
        depths.push(depth + 1);
      }
      continue;
    }
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return false;
    for (const k of Object.keys(v)) {
      stack.push((v as Record<string, unknown>)[k]);
      depths.push(depth + 1);
    }
  }
  return true;
}

/** What JsonValue says of a value that is not one. */
export const JSON_VALUE_MESSAGE = `must be a JSON value (null, boolean, finite number, string, or arrays and plain objects of them) nested at most ${MAX_JSON_DEPTH} deep`;
