import { z } from 'zod';
import { methods, VmConfig } from 'hvplug/protocol';

/** How to run one plugin: what a [plugins.<name>] table of the config file holds. */
export const PluginSpec = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'plugin names are lower-case a-z 0-9 . _ -'),
  command: z.string().min(1),
  args: z.array(z.string()).default([]),
  /** Variables set for the plugin. */
  env: z.record(z.string(), z.string()).default({}),
  /** Host variables the plugin may see beyond the allow-list. */
  envPassthrough: z.array(z.string()).default([]),
  /** SHA-256 (hex) of the executable; checked before it runs. */
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits').optional(),
  /** shared: one process serves every VM; per-vm: one process per VM, for crash isolation. */
  isolation: z.enum(['shared', 'per-vm']).default('shared'),
  /** How long the plugin has to answer initialize after it is spawned (go-plugin's StartTimeout). */
  startTimeoutMs: z.number().int().min(100).max(600_000).default(methods.initialize.timeoutMs),
  /** Merged under every VM config created through this plugin. */
  defaults: VmConfig.partial().default({}),
  /** Where the spec came from, for `hvplug plugins`. */
  source: z.string().default('api'),
});
export type PluginSpec = z.output<typeof PluginSpec>;
export type PluginSpecInput = z.input<typeof PluginSpec>;

/** The keys of a VmConfig whose entries merge one by one; every other key is taken whole from one side. */
const MERGED_BY_KEY = ['annotations', 'plugin'] as const;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A spec's defaults under a caller's raw VmConfig, before it is validated. The caller wins. Shallow: a key
 * the caller gives replaces the default's whole value (memory, devices, kernel), except `annotations` and
 * `plugin`, merged one level deep (the caller's entry wins per key; an entry's own value is not merged).
 * A key the caller gives as undefined counts as not given. Anything but an object is left to validation.
 */
export function mergeDefaults(defaults: PluginSpec['defaults'], config: unknown): unknown {
  if (config === undefined) return { ...defaults };
  if (!isPlainObject(config)) return config;
  const merged: Record<string, unknown> = { ...defaults };
  for (const [key, value] of Object.entries(config)) {
    if (value !== undefined) merged[key] = value;
  }
  for (const key of MERGED_BY_KEY) {
    const under = (defaults as Record<string, unknown>)[key];
    const over = config[key];
    if (isPlainObject(under) && isPlainObject(over)) merged[key] = { ...under, ...over };
  }
  return merged;
}
