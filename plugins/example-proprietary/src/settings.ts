import type { Issue } from 'hvplug/protocol';
import type { JsonObject } from './json.js';
import { validate, withDefaults } from './json-schema.js';

/** JSON Schema of VmConfig.plugin, declared at initialize and enforced on every config we are given. */
export const SETTINGS_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'example-proprietary VM settings',
  type: 'object',
  additionalProperties: false,
  properties: {
    tickMs: {
      type: 'integer',
      minimum: 10,
      maximum: 60_000,
      default: 100,
      description: 'How often the simulated guest prints its counter on the console.',
    },
    powerOffAfterTicks: {
      type: 'integer',
      minimum: 0,
      maximum: 1_000_000_000,
      default: 0,
      description: 'The guest powers itself off (exit code 0) after this many ticks; 0: never.',
    },
    agentPort: {
      type: 'integer',
      minimum: 1,
      maximum: 65_535,
      default: 1024,
      description: 'The vsock port the guest agent listens on, answered by vm/agentSocket when the VM has a vsock device.',
    },
  },
} satisfies JsonObject;

export interface GuestSettings {
  tickMs: number;
  powerOffAfterTicks: number;
  agentPort: number;
}

/** The settings with defaults applied, or the issues (paths under `plugin`). */
export function readSettings(section: JsonObject): { settings: GuestSettings; section: JsonObject } | { issues: Issue[] } {
  const issues = validate(SETTINGS_SCHEMA, section, ['plugin']);
  if (issues.length) return { issues };
  const full = withDefaults(SETTINGS_SCHEMA, section);
  return {
    section: full,
    settings: { tickMs: Number(full.tickMs), powerOffAfterTicks: Number(full.powerOffAfterTicks), agentPort: Number(full.agentPort) },
  };
}
