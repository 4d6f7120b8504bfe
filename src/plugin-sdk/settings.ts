// A plugin's own section of a VM config (VmConfig.plugin), declared once in zod: the JSON Schema it publishes
// at initialize (configSchema) is derived from the same declaration that parses it.
// zod/mini's functions: they take a schema of zod's classic API as well as one of zod/mini.
import * as z from 'zod/mini';
import { toIssues, type Issue, type Json } from 'hvplug/protocol';
import { errors } from './errors.js';

/** zod's issues, an unknown key told at its own path (zod tells the keys at their object's): the user sees which setting is wrong. */
function issuesOf(error: z.core.$ZodError): Issue[] {
  return toIssues(error).flatMap((issue, n) => {
    const raw = error.issues[n];
    return raw?.code === 'unrecognized_keys' ? raw.keys.map((k) => ({ path: [...issue.path, k], message: 'is not a known setting' })) : [issue];
  });
}

export interface Settings<T> {
  /** For the definition's configSchema. */
  readonly jsonSchema: Record<string, Json>;
  /** The settings of an empty section: every default. */
  readonly defaults: T;
  /** The section's settings, or its issues at paths from the VmConfig root (`plugin.<key>`). */
  safeParse(section: unknown): { ok: true; value: T; issues: [] } | { ok: false; value: undefined; issues: Issue[] };
  /** The section's settings; InvalidConfig when it is not valid. */
  parse(section: unknown): T;
}

/**
 * Declare every setting with a default (an empty section must be valid). A z.custom field publishes as `{}` (anything).
 * `schema` is a zod schema, of zod's classic API or of zod/mini.
 */
export function settings<S extends z.core.$ZodType<unknown, Record<string, unknown>>>(schema: S, meta: { title?: string } = {}): Settings<z.output<S>> {
  const jsonSchema = { ...(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, Json>), ...(meta.title ? { title: meta.title } : {}) };
  const safeParse = (section: unknown): ReturnType<Settings<z.output<S>>['safeParse']> => {
    const r = z.safeParse(schema, section ?? {});
    if (r.success) return { ok: true, value: r.data, issues: [] };
    return { ok: false, value: undefined, issues: issuesOf(r.error).map((i) => ({ ...i, path: ['plugin', ...i.path] })) };
  };
  const first = z.safeParse(schema, {});
  if (!first.success) throw new Error(`settings: an empty section must be valid (every setting needs a default): ${first.error.message}`);
  return {
    jsonSchema,
    defaults: first.data,
    safeParse,
    parse: (section) => {
      const r = safeParse(section);
      if (!r.ok) throw errors.invalidConfig(r.issues);
      return r.value;
    },
  };
}
