// JSON values as the plugin handles them: the opaque state blob, the plugin's config section, CH bodies.
import type { Json } from 'hvplug/protocol';

export type { Json };
export type JsonObject = { [key: string]: Json };

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Drops undefined members (JSON has none), so typed values with optional fields become Json. */
export function toJson(value: unknown): Json {
  return JSON.parse(JSON.stringify(value ?? null)) as Json;
}

/**
 * `overrides` laid over `base`: objects merge member by member, anything else replaces. Used for the
 * plugin's escape hatch into the Cloud Hypervisor VmConfig, which the VMM validates itself.
 */
export function deepMerge(base: JsonObject, overrides: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    const current = out[k];
    out[k] = isJsonObject(current) && isJsonObject(v) ? deepMerge(current, v) : v;
  }
  return out;
}
