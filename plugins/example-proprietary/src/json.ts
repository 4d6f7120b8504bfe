import type { Json } from 'hvplug/protocol';

/** A JSON value, as the protocol's opaque fields (state, the plugin config section) carry it. */
export type { Json };
export type JsonObject = { [key: string]: Json };

/** Through JSON and back: what the host will store is exactly what we hand over (no undefined, no class). */
export function toJson(value: unknown): Json {
  return JSON.parse(JSON.stringify(value));
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
