// The plugin's own section of a VM config (VmConfig.plugin), declared once: the SDK derives the parser and the
// JSON Schema published at initialize from it.
import * as z from 'zod/mini';
import { settings } from 'hvplug/plugin-sdk';

const typeName = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' ? (Number.isInteger(v) ? 'integer' : 'number') : typeof v;

/** An integer setting, its issues told in the published schema's words (what the user reads). */
const integer = (min: number, max: number, fallback: number, description: string) =>
  z
    ._default(
      z.int({ error: (iss) => (iss.code === 'invalid_type' ? `must be integer, got ${typeName(iss.input)}` : undefined) }).check(z.minimum(min, `must be >= ${min}`), z.maximum(max, `must be <= ${max}`)),
      fallback,
    )
    .check(z.describe(description));

export const guestSettings = settings(
  z.strictObject({
    tickMs: integer(10, 60_000, 100, 'How often the simulated guest prints its counter on the console.'),
    powerOffAfterTicks: integer(0, 1_000_000_000, 0, 'The guest powers itself off (exit code 0) after this many ticks; 0: never.'),
    agentPort: integer(1, 65_535, 1024, 'The vsock port the guest agent listens on, answered by vm/agentSocket when the VM has a vsock device.'),
  }),
  { title: 'example-proprietary VM settings' },
);

export type GuestSettings = typeof guestSettings.defaults;
