// The plugin's own section of a VM config (VmConfig.plugin): its JSON Schema, declared at initialize,
// and a hand-written check of it (the plugin depends on nothing but the SDK and the protocol).
import type { Issue } from 'hvplug/protocol';
import { isJsonObject, type Json, type JsonObject } from './json.js';

export interface AgentOptions {
  /** Add a vsock device for the agent when the config has none (Kata does the same for Cloud Hypervisor). */
  readonly enabled: boolean;
  readonly cid: number;
  /** The guest port the agent listens on; the host side is the vsock device's unix socket. */
  readonly port: number;
}

export type MemoryHotplug = 'acpi' | 'virtio-mem';

export interface PluginOptions {
  readonly agent: AgentOptions;
  /** ACPI hotplug only grows memory; virtio-mem grows and shrinks it (the guest needs the virtio-mem driver). */
  readonly memoryHotplug: MemoryHotplug;
  /** Laid over the Cloud Hypervisor VmConfig sent to vm.create, for what hvplug's config does not model. */
  readonly overrides: JsonObject;
}

export const DEFAULT_OPTIONS: PluginOptions = {
  agent: { enabled: true, cid: 3, port: 1024 },
  memoryHotplug: 'acpi',
  overrides: {},
};

const U32_MAX = 0xffffffff;

export const CONFIG_SCHEMA: JsonObject = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'cloud-hypervisor plugin options (VmConfig.plugin)',
  type: 'object',
  additionalProperties: false,
  properties: {
    agent: {
      type: 'object',
      additionalProperties: false,
      description: 'The agent vsock device the plugin adds when the config has no vsock device; vm/agentSocket answers it.',
      properties: {
        enabled: { type: 'boolean', default: true },
        cid: { type: 'integer', minimum: 3, maximum: U32_MAX - 1, default: 3 },
        port: { type: 'integer', minimum: 1, maximum: U32_MAX, default: 1024 },
      },
    },
    memoryHotplug: {
      enum: ['acpi', 'virtio-mem'],
      default: 'acpi',
      description: 'acpi: vm/resizeMemory can only grow memory. virtio-mem: it can also shrink it, down to the boot size.',
    },
    overrides: {
      type: 'object',
      description: 'Merged into the Cloud Hypervisor VmConfig (openapi.yaml, components.schemas.VmConfig) sent to vm.create; the VMM validates it.',
    },
  },
};

function intIn(v: Json | undefined, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

function unknownKeys(obj: JsonObject, known: readonly string[], path: (string | number)[], issues: Issue[]): void {
  for (const k of Object.keys(obj)) if (!known.includes(k)) issues.push({ path: [...path, k], message: 'unknown option' });
}

function parseAgent(v: Json | undefined, issues: Issue[]): AgentOptions {
  const d = DEFAULT_OPTIONS.agent;
  if (v === undefined) return d;
  const path = ['plugin', 'agent'];
  if (!isJsonObject(v)) {
    issues.push({ path, message: 'must be an object' });
    return d;
  }
  unknownKeys(v, ['enabled', 'cid', 'port'], path, issues);
  const enabled = v.enabled ?? d.enabled;
  if (typeof enabled !== 'boolean') issues.push({ path: [...path, 'enabled'], message: 'must be a boolean' });
  const cid = v.cid ?? d.cid;
  if (!intIn(cid, 3, U32_MAX - 1)) issues.push({ path: [...path, 'cid'], message: `must be an integer from 3 to ${U32_MAX - 1}` });
  const port = v.port ?? d.port;
  if (!intIn(port, 1, U32_MAX)) issues.push({ path: [...path, 'port'], message: `must be an integer from 1 to ${U32_MAX}` });
  return {
    enabled: typeof enabled === 'boolean' ? enabled : d.enabled,
    cid: typeof cid === 'number' ? cid : d.cid,
    port: typeof port === 'number' ? port : d.port,
  };
}

/** The options of VmConfig.plugin, with the issues that make them invalid (paths from the VmConfig root). */
export function parseOptions(section: Record<string, Json>): { options: PluginOptions; issues: Issue[] } {
  const issues: Issue[] = [];
  unknownKeys(section, ['agent', 'memoryHotplug', 'overrides'], ['plugin'], issues);
  const agent = parseAgent(section.agent, issues);
  const hotplug = section.memoryHotplug ?? DEFAULT_OPTIONS.memoryHotplug;
  if (hotplug !== 'acpi' && hotplug !== 'virtio-mem') issues.push({ path: ['plugin', 'memoryHotplug'], message: 'must be "acpi" or "virtio-mem"' });
  const overrides = section.overrides ?? {};
  if (!isJsonObject(overrides)) issues.push({ path: ['plugin', 'overrides'], message: 'must be an object' });
  return {
    options: {
      agent,
      memoryHotplug: hotplug === 'virtio-mem' ? 'virtio-mem' : 'acpi',
      overrides: isJsonObject(overrides) ? overrides : {},
    },
    issues,
  };
}
