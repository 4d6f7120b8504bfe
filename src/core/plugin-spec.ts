import * as z from 'zod/mini';
import { methods, PartialVmConfig } from 'hvplug/protocol';
import { AddressError, parseAddress } from '../transport/address.js';

/** Paths of PEM files, read at each connection (a renewed certificate is used from the next one on). */
export const TlsFiles = z.strictObject({
  /** The host's certificate (chain), presented to the plugin. */
  cert: z.string().check(z.minLength(1)),
  key: z.string().check(z.minLength(1)),
  /** The CA that signed the plugin's certificate. */
  ca: z.string().check(z.minLength(1)),
});
export type TlsFiles = z.output<typeof TlsFiles>;

const Address = z.string().check(
  z.superRefine((text, ctx) => {
    try {
      parseAddress(text);
    } catch (err) {
      if (!(err instanceof AddressError)) throw err;
      ctx.addIssue({ code: 'custom', message: err.message });
    }
  }),
);

/**
 * The longest delay a node timer keeps (2^31-1 ms, about 24.8 days; a longer one fires at once): the most a config
 * file or the command line may give unreachableLostAfterMs, where more is a typo more likely than a wish (0 is never).
 */
export const MAX_LOST_AFTER_MS = 2_147_483_647;

/** The fields of a spec, before the rules that tie them together (the config file's tables are made from these). */
export const PluginSpecFields = z.object({
  name: z.string().check(z.regex(/^[a-z0-9][a-z0-9._-]*$/, 'plugin names are lower-case a-z 0-9 . _ -')),
  /** The executable to spawn; or, with `connect`, none: the plugin already runs and listens. */
  command: z.optional(z.string().check(z.minLength(1))),
  /** A listening plugin's address instead of a command: `unix:<path>` or `tls://<host>:<port>` (no plaintext TCP). */
  connect: z.optional(Address),
  /** For a tls:// address: the host's certificate and key, and the CA of the plugin's certificate. */
  tls: z.optional(TlsFiles),
  args: z._default(z.array(z.string()), []),
  /** Variables set for the plugin. */
  env: z._default(z.record(z.string(), z.string()), {}),
  /** Host variables the plugin may see beyond the allow-list. */
  envPassthrough: z._default(z.array(z.string()), []),
  /** SHA-256 (hex) of the executable; checked before it runs. */
  sha256: z.optional(z.string().check(z.regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits'))),
  /** shared: one process serves every VM; per-vm: one process per VM, for crash isolation. */
  isolation: z._default(z.enum(['shared', 'per-vm']), 'shared'),
  /** How long the plugin has to answer initialize after it is spawned (go-plugin's StartTimeout). */
  startTimeoutMs: z._default(z.number().check(z.int(), z.gte(100), z.lte(600_000)), methods.initialize.timeoutMs),
  /**
   * For a plugin connected to: how long it may be out of reach before its VMs are reported lost; 0 never. Absent:
   * the host's (SupervisionOptions.unreachableLostAfterMs, `hvplug --unreachable-lost-after`).
   */
  unreachableLostAfterMs: z.optional(
    z.number().check(
      z.int({ error: 'must be a whole number of milliseconds' }),
      z.gte(0, { error: 'must be 0 (never) or more milliseconds' }),
      z.lte(MAX_LOST_AFTER_MS, { error: `must be at most ${MAX_LOST_AFTER_MS} ms (about 24.8 days), the longest a timer waits; 0 is never` }),
    ),
  ),
  /** Merged under every VM config created through this plugin. */
  defaults: z._default(PartialVmConfig, {}),
  /** Where the spec came from, for `hvplug plugins`. */
  source: z._default(z.string(), 'api'),
});

/** How to run one plugin: what a [plugins.<name>] table of the config file holds. */
export const PluginSpec = PluginSpecFields.check(z.superRefine((spec, ctx) => {
  const say = (message: string, path: string): void => ctx.addIssue({ code: 'custom', message, path: [path] });
  if (spec.connect === undefined) {
    if (spec.command === undefined) say('give a command to run, or connect = "<address>" of a listening plugin', 'command');
    if (spec.tls !== undefined) say('tls is for connect = "tls://..."', 'tls');
    if (spec.unreachableLostAfterMs !== undefined) {
      say('unreachableLostAfterMs is for connect = "<address>": a plugin the host spawns is restarted when it dies, never out of reach', 'unreachableLostAfterMs');
    }
    return;
  }
  if (spec.command !== undefined) say('give either command or connect, not both', 'connect');
  // A listening plugin runs already: nothing of how to start one applies to it, and saying so beats ignoring it.
  if (spec.args.length) say('args are for a command; a listening plugin was started with its own', 'args');
  if (Object.keys(spec.env).length) say('env is for a command; a listening plugin has its own', 'env');
  if (spec.envPassthrough.length) say('envPassthrough is for a command', 'envPassthrough');
  if (spec.sha256 !== undefined) say('sha256 pins an executable; a listening plugin is authenticated by its certificate', 'sha256');
  if (spec.isolation === 'per-vm') say('per-vm isolation spawns a process per VM; a listening plugin is one process', 'isolation');
  const tlsAddress = spec.connect.startsWith('tls://');
  if (tlsAddress && spec.tls === undefined) say('a tls:// address needs tls = { cert, key, ca }', 'tls');
  if (!tlsAddress && spec.tls !== undefined) say('tls is for a tls:// address', 'tls');
}));
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
