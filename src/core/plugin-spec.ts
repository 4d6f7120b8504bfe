import { z } from 'zod';
import { VmConfig } from 'hvplug/protocol';

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
  /** Merged under every VM config created through this plugin. */
  defaults: VmConfig.partial().default({}),
  /** Where the spec came from, for `hvplug plugins`. */
  source: z.string().default('api'),
});
export type PluginSpec = z.output<typeof PluginSpec>;
export type PluginSpecInput = z.input<typeof PluginSpec>;
