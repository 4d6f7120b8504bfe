// The plugin's own section of a VM config (VmConfig.plugin), declared once: the SDK derives the parser and the
// JSON Schema published at initialize from it.
import * as z from 'zod/mini';
import { settings } from 'hvplug/plugin-sdk';
import { JsonValue, type Issue } from 'hvplug/protocol';
import type { JsonObject } from './json.js';

const U32_MAX = 0xffffffff;

const Options = z.strictObject({
  agent: z
    .prefault(
      z.strictObject({
        /** Add a vsock device for the agent when the config has none (Kata does the same for Cloud Hypervisor). */
        enabled: z._default(z.boolean(), true),
        cid: z._default(z.number().check(z.int(), z.minimum(3), z.maximum(U32_MAX - 1)), 3),
        /** The guest port the agent listens on; the host side is the vsock device's unix socket. */
        port: z._default(z.number().check(z.int(), z.minimum(1), z.maximum(U32_MAX)), 1024),
      }),
      {},
    )
    .check(z.describe('The agent vsock device the plugin adds when the config has no vsock device; vm/agentSocket answers it.')),
  memoryHotplug: z
    ._default(z.enum(['acpi', 'virtio-mem']), 'acpi')
    .check(z.describe('acpi: vm/resizeMemory can only grow memory. virtio-mem: it can also shrink it, down to the boot size.')),
  overrides: z
    ._default(z.record(z.string(), JsonValue), {})
    .check(z.describe('Merged into the Cloud Hypervisor VmConfig (openapi.yaml, components.schemas.VmConfig) sent to vm.create; the VMM validates it.')),
});

const options = settings(Options, { title: 'cloud-hypervisor plugin options (VmConfig.plugin)' });

export type PluginOptions = Readonly<Omit<z.output<typeof Options>, 'overrides'>> & { readonly overrides: JsonObject };
export type AgentOptions = PluginOptions['agent'];
export type MemoryHotplug = PluginOptions['memoryHotplug'];

export const DEFAULT_OPTIONS: PluginOptions = options.defaults;
export const CONFIG_SCHEMA = options.jsonSchema;

/** The options of VmConfig.plugin, with the issues that make them invalid (paths from the VmConfig root). */
export function parseOptions(section: unknown): { options: PluginOptions; issues: Issue[] } {
  const r = options.safeParse(section);
  return { options: r.value ?? DEFAULT_OPTIONS, issues: r.issues };
}
