// zod/mini through a namespace import: esbuild keeps only the zod a plugin uses (see devices.ts).
import * as z from 'zod/mini';
import './locale.js';
import { DeviceType, NET_BACKENDS, NetBackend } from './devices.js';
import { JsonValue } from './json.js';

export const DeviceSupport = z.object({
  coldplug: z.boolean(),
  hotplug: z.boolean(),
  hotunplug: z.boolean(),
});
export type DeviceSupport = z.infer<typeof DeviceSupport>;

/** `x-<vendor>/<name>`: vendor methods travel untyped, described by the JSON Schema the plugin declares. */
export const ExtensionName = z.string().check(z.regex(/^x-[a-z0-9][a-z0-9-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must look like x-<vendor>/<name>'));

export const JsonSchema = z.record(z.string(), JsonValue);

export const Extension = z.object({
  summary: z.optional(z.string()),
  params: z._default(JsonSchema, {}),
  result: z._default(JsonSchema, {}),
});

export const Capabilities = z.object({
  /** Every gated method of the table the plugin implements; anything else is refused by the shim. */
  methods: z.array(z.string()),
  /** Which device types can be attached before boot, hot-plugged and hot-unplugged. */
  devices: z._default(z.partialRecord(DeviceType, DeviceSupport), {}),
  /** The net device backends the plugin attaches (a VMM without user-mode networking leaves out `user`). */
  netBackends: z._default(z.array(NetBackend), [...NET_BACKENDS]),
  /** Per machine type; a machine listed with hotplug false refuses hotplug whatever `devices` says. */
  machines: z._default(z.record(z.string(), z.object({ hotplug: z.boolean() })), {}),
  consoleKinds: z._default(z.array(z.enum(['log', 'socket', 'pty'])), []),
  /** The VMM applies rate limits itself (Kata's IsRateLimiterBuiltin). */
  rateLimiter: z._default(z.boolean(), false),
  extensions: z._default(z.record(ExtensionName, Extension), {}),
});
export type Capabilities = z.output<typeof Capabilities>;
export type CapabilitiesInput = z.input<typeof Capabilities>;
