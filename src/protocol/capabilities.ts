// A namespace import lets esbuild keep only the zod a plugin uses (`import { z }` pulls in all of it, locales too).
import * as z from 'zod';
import { DeviceType, NET_BACKENDS, NetBackend } from './devices.js';
import { JsonValue } from './json.js';

export const DeviceSupport = z.object({
  coldplug: z.boolean(),
  hotplug: z.boolean(),
  hotunplug: z.boolean(),
});
export type DeviceSupport = z.infer<typeof DeviceSupport>;

/** `x-<vendor>/<name>`: vendor methods travel untyped, described by the JSON Schema the plugin declares. */
export const ExtensionName = z.string().regex(/^x-[a-z0-9][a-z0-9-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must look like x-<vendor>/<name>');

export const JsonSchema = z.record(z.string(), JsonValue);

export const Extension = z.object({
  summary: z.string().optional(),
  params: JsonSchema.default({}),
  result: JsonSchema.default({}),
});

export const Capabilities = z.object({
  /** Every gated method of the table the plugin implements; anything else is refused by the shim. */
  methods: z.array(z.string()),
  /** Which device types can be attached before boot, hot-plugged and hot-unplugged. */
  devices: z.partialRecord(DeviceType, DeviceSupport).default({}),
  /** The net device backends the plugin attaches (a VMM without user-mode networking leaves out `user`). */
  netBackends: z.array(NetBackend).default([...NET_BACKENDS]),
  /** Per machine type; a machine listed with hotplug false refuses hotplug whatever `devices` says. */
  machines: z.record(z.string(), z.object({ hotplug: z.boolean() })).default({}),
  consoleKinds: z.array(z.enum(['log', 'socket', 'pty'])).default([]),
  /** The VMM applies rate limits itself (Kata's IsRateLimiterBuiltin). */
  rateLimiter: z.boolean().default(false),
  extensions: z.record(ExtensionName, Extension).default({}),
});
export type Capabilities = z.output<typeof Capabilities>;
export type CapabilitiesInput = z.input<typeof Capabilities>;
