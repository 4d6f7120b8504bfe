// zod/mini through a namespace import: esbuild keeps only the zod a plugin uses (see devices.ts).
import * as z from 'zod/mini';
import './locale.js';
import { Capabilities, JsonSchema } from './capabilities.js';
import { JsonValue } from './json.js';
import { AbsPath, Device, DeviceType, Id } from './devices.js';
import { PluginState, VmConfig, VmResult, VmStatus } from './vm.js';
import { compareVersions, FIRST_PROTOCOL_VERSION } from './version.js';

/**
 * The method table: the single source of truth for the wire. The shim's methods, the SDK's dispatch,
 * the OpenRPC document and the conformance checks are all derived from it.
 *
 * scope:
 * - `session`: spoken by the host itself (handshake, health), not part of the hypervisor API;
 * - `plugin`: a call on the hypervisor as a whole;
 * - `new-vm`: brings a VM into existence under a host-chosen vmId;
 * - `vm`: acts on an existing VM (params carry vmId).
 */
export type Scope = 'session' | 'plugin' | 'new-vm' | 'vm';

export interface MethodDef<P extends z.ZodMiniType = z.ZodMiniType, R extends z.ZodMiniType = z.ZodMiniType> {
  readonly params: P;
  readonly result: R;
  /** Default deadline; null for calls that legitimately wait without bound (vm/wait), cancellable still. */
  readonly timeoutMs: number | null;
  /** Gated methods must be listed in the plugin's capabilities.methods; the rest every plugin answers. */
  readonly gated: boolean;
  readonly scope: Scope;
  /** The method's name on the shim (ShimHypervisor for plugin/new-vm, ShimVm for vm). */
  readonly api: string;
  readonly summary: string;
  /** Long calls report `$/progress`; params then accept a progressToken. */
  readonly progress?: boolean;
  /** Repeating the call in the state it leads to succeeds without effect. */
  readonly idempotent?: boolean;
  /**
   * What the call does to the host's record of the VM (absent: it only updates it):
   * - `create`: a new record, written before the call and removed if it fails; the config gets the host's defaults;
   * - `reattach`: the record exists already (plugin or host restart); it stays if the call fails, its config is sent as recorded;
   * - `delete`: a success removes the record, and with per-VM isolation the VM's plugin process;
   * - `hand-off`: a success means the VM now runs elsewhere (live migration): the record goes once the destination
   *   host's record owns the VM (PluginHost.migrate), never before.
   */
  readonly record?: 'create' | 'reattach' | 'delete' | 'hand-off';
  /**
   * What the call does to the VM's device list: `adds` params.device, `removes` params.deviceId, or `attaches` the
   * config's devices cold at creation (each checked against the capabilities' coldplug).
   */
  readonly devices?: 'adds' | 'removes' | 'attaches';
  /** Session methods: the part each plays in the host's conversation with a plugin process. */
  readonly session?: SessionRole;
  /** The protocol version that added the method (absent: FIRST_PROTOCOL_VERSION). */
  readonly since?: string;
}

/** The session methods by role: the host and the SDK name them through these, never by their wire names. */
export type SessionRole = 'handshake' | 'goodbye' | 'ping' | 'discover';

const Vm = { vmId: Id };
/**
 * Where a migration stream goes: `tcp:<host>:<port>` or `unix:<absolute path>`, the URI syntax QEMU's migrate takes.
 * The destination's vm/receiveMigration answers it; the source's vm/migrate is given it.
 */
export const MigrationUri = z
  .string()
  .check(
    z.maxLength(1024),
    z.regex(/^(tcp:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}|unix:\/.+)$/, 'must be tcp:<host>:<port> or unix:<absolute path>'),
  );
const Empty = z.object({});
const ProgressToken = z.union([z.string(), z.number()]);
const NonNegative = z.number().check(z.nonnegative());
const NonNegativeInt = z.number().check(z.int(), z.nonnegative());
const PositiveInt = z.number().check(z.int(), z.positive());

export const InitializeParams = z.object({
  protocolVersions: z.array(z.string()).check(z.minLength(1)),
  host: z.object({ name: z.string(), version: z.string() }),
  /** Where the plugin may keep files that must survive its restart. */
  stateDir: AbsPath,
  /** Where the plugin puts sockets, pidfiles and logs of its VMs. */
  runtimeDir: AbsPath,
  logLevel: z._default(z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), 'info'),
});
export type InitializeParams = z.infer<typeof InitializeParams>;

export const PluginInfo = z.object({
  name: z.string().check(z.minLength(1)),
  version: z.string().check(z.minLength(1)),
  vendor: z.string().check(z.minLength(1)),
  description: z.optional(z.string()),
});
export type PluginInfo = z.infer<typeof PluginInfo>;

export const InitializeResult = z.object({
  protocolVersion: z.string(),
  plugin: PluginInfo,
  capabilities: Capabilities,
  /** JSON Schema of VmConfig.plugin, the plugin's own config section. */
  configSchema: z._default(JsonSchema, {}),
});
export type InitializeResult = z.output<typeof InitializeResult>;

export const VmInfo = z.object({
  vmId: Id,
  status: VmStatus,
  /** The VMM's process id, when there is one. */
  pid: z.optional(PositiveInt),
  vcpus: NonNegativeInt,
  memoryMiB: NonNegativeInt,
  machine: z.optional(z.string()),
  accel: z.optional(z.string()),
  jailerRoot: z.optional(z.string()),
  devices: z.array(z.object({ id: Id, type: DeviceType })),
  details: z._default(z.record(z.string(), JsonValue), {}),
});
export type VmInfo = z.output<typeof VmInfo>;

/** Keeps each entry's literal types (scope, api) so the shim's typed API can be derived from them. */
function def<const D extends MethodDef>(d: D): D {
  return d;
}

export const methods = {
  initialize: def({
    params: InitializeParams,
    result: InitializeResult,
    timeoutMs: 10_000,
    gated: false,
    scope: 'session',
    api: 'initialize',
    summary: 'Handshake: negotiate the protocol version and learn the plugin and its capabilities.',
    session: 'handshake',
  }),
  shutdown: def({
    params: Empty,
    result: Empty,
    timeoutMs: 10_000,
    gated: false,
    scope: 'session',
    api: 'shutdown',
    summary: 'Release control connections before exit. VMs keep running.',
    session: 'goodbye',
  }),
  'health/ping': def({
    params: Empty,
    result: z.object({ uptimeMs: NonNegative }),
    timeoutMs: 5_000,
    gated: false,
    scope: 'session',
    api: 'ping',
    summary: 'Liveness probe used by the supervisor.',
    session: 'ping',
  }),
  'rpc.discover': def({
    params: Empty,
    result: JsonSchema,
    timeoutMs: 5_000,
    gated: false,
    scope: 'session',
    api: 'discover',
    summary: 'The OpenRPC document of this protocol, with the plugin\'s vendor extensions.',
    session: 'discover',
  }),
  'config/validate': def({
    params: z.object({ config: VmConfig }),
    result: z.object({ config: VmConfig, warnings: z.array(z.string()) }),
    timeoutMs: 10_000,
    gated: true,
    scope: 'plugin',
    api: 'validateConfig',
    summary: 'Check a VM config and return it adjusted to what the plugin will really do, with warnings.',
  }),
  'vm/create': def({
    params: z.object({ ...Vm, config: VmConfig }),
    result: VmResult,
    timeoutMs: 30_000,
    gated: true,
    scope: 'new-vm',
    api: 'createVm',
    summary: 'Prepare a VM (runtime directory, VMM process not yet running the guest).',
    record: 'create',
    devices: 'attaches',
  }),
  'vm/restore': def({
    params: z.object({ ...Vm, config: VmConfig, path: AbsPath, progressToken: z.optional(ProgressToken) }),
    result: VmResult,
    timeoutMs: 300_000,
    gated: true,
    scope: 'new-vm',
    api: 'restoreVm',
    progress: true,
    summary: 'Create a VM from a snapshot written by vm/save; it comes back paused.',
    record: 'create',
  }),
  'vm/recover': def({
    params: z.object({ ...Vm, config: VmConfig, state: PluginState }),
    result: VmResult,
    timeoutMs: 30_000,
    gated: true,
    scope: 'new-vm',
    api: 'recoverVm',
    summary: 'Re-attach to a VM from the state a previous plugin process returned; status lost if the VMM is gone.',
    record: 'reattach',
  }),
  'vm/start': def({
    params: z.object({ ...Vm, progressToken: z.optional(ProgressToken) }),
    result: VmResult,
    timeoutMs: 120_000,
    gated: true,
    scope: 'vm',
    api: 'start',
    progress: true,
    summary: 'Boot the guest.',
  }),
  'vm/stop': def({
    params: z.object({ ...Vm, force: z._default(z.boolean(), false), graceMs: z._default(NonNegativeInt, 10_000) }),
    result: VmResult,
    timeoutMs: 60_000,
    gated: true,
    scope: 'vm',
    api: 'stop',
    idempotent: true,
    summary: 'Stop the guest: graceful power-down within graceMs, then forced.',
  }),
  'vm/pause': def({
    params: z.object(Vm),
    result: VmResult,
    timeoutMs: 10_000,
    gated: true,
    scope: 'vm',
    api: 'pause',
    summary: 'Freeze the guest\'s vCPUs.',
  }),
  'vm/resume': def({
    params: z.object(Vm),
    result: VmResult,
    timeoutMs: 10_000,
    gated: true,
    scope: 'vm',
    api: 'resume',
    summary: 'Unfreeze a paused guest.',
  }),
  'vm/wait': def({
    params: z.object(Vm),
    result: z.object({ status: VmStatus, exitCode: z.nullable(z.number().check(z.int())), reason: z.string() }),
    timeoutMs: null,
    gated: true,
    scope: 'vm',
    api: 'wait',
    summary: 'Resolve when the VM is no longer running (stopped, crashed or lost).',
  }),
  'vm/save': def({
    params: z.object({ ...Vm, path: AbsPath, progressToken: z.optional(ProgressToken) }),
    result: z.object({ path: AbsPath, sizeBytes: NonNegativeInt, state: z.optional(PluginState) }),
    timeoutMs: 300_000,
    gated: true,
    scope: 'vm',
    api: 'save',
    progress: true,
    summary: 'Snapshot a paused VM\'s memory and device state to path.',
  }),
  'vm/delete': def({
    params: z.object(Vm),
    result: Empty,
    timeoutMs: 30_000,
    gated: true,
    scope: 'vm',
    api: 'delete',
    idempotent: true,
    summary: 'Release everything the VM holds (stopping it first); deleting an unknown VM succeeds.',
    record: 'delete',
  }),
  'vm/check': def({
    params: z.object(Vm),
    result: z.object({ ok: z.boolean(), detail: z.string() }),
    timeoutMs: 10_000,
    gated: true,
    scope: 'vm',
    api: 'check',
    summary: 'Is the VMM responsive?',
  }),
  'vm/disconnect': def({
    params: z.object(Vm),
    result: Empty,
    timeoutMs: 10_000,
    gated: true,
    scope: 'vm',
    api: 'disconnect',
    summary: 'Drop the plugin\'s control connection to the VMM; the VM keeps running.',
  }),
  'vm/info': def({
    params: z.object(Vm),
    result: VmInfo,
    timeoutMs: 10_000,
    gated: true,
    scope: 'vm',
    api: 'info',
    summary: 'Status, pid, size, machine, accelerator, devices.',
  }),
  'vm/config': def({
    params: z.object(Vm),
    result: z.object({ config: VmConfig }),
    timeoutMs: 10_000,
    gated: true,
    scope: 'vm',
    api: 'getConfig',
    summary: 'The VM\'s config as the plugin holds it, devices added since included.',
  }),
  'device/add': def({
    params: z.object({ ...Vm, device: Device }),
    result: z.object({ deviceId: Id, state: z.optional(PluginState) }),
    timeoutMs: 30_000,
    gated: true,
    scope: 'vm',
    api: 'addDevice',
    summary: 'Attach a device: cold before boot, hot while running.',
    devices: 'adds',
  }),
  'device/remove': def({
    params: z.object({ ...Vm, deviceId: Id }),
    result: z.object({ state: z.optional(PluginState) }),
    timeoutMs: 30_000,
    gated: true,
    scope: 'vm',
    api: 'removeDevice',
    summary: 'Detach a device (hot-unplug while running).',
    devices: 'removes',
  }),
  'vm/resizeVcpus': def({
    params: z.object({ ...Vm, count: z.number().check(z.int(), z.minimum(1), z.maximum(512)) }),
    result: z.object({ vcpus: PositiveInt }),
    timeoutMs: 30_000,
    gated: true,
    scope: 'vm',
    api: 'resizeVcpus',
    summary: 'Set the number of online vCPUs.',
  }),
  'vm/resizeMemory': def({
    params: z.object({ ...Vm, sizeMiB: z.number().check(z.int(), z.minimum(16)) }),
    result: z.object({ memoryMiB: PositiveInt }),
    timeoutMs: 60_000,
    gated: true,
    scope: 'vm',
    api: 'resizeMemory',
    summary: 'Set the guest\'s memory size.',
  }),
  'vm/console': def({
    params: z.object(Vm),
    result: z.object({ kind: z.enum(['log', 'socket', 'pty']), path: z.string() }),
    timeoutMs: 10_000,
    gated: true,
    scope: 'vm',
    api: 'console',
    summary: 'Where the guest console is: a log file, a unix socket or a pty.',
  }),
  'vm/agentSocket': def({
    params: z.object(Vm),
    result: z.object({
      kind: z.enum(['vsock', 'unix']),
      cid: z.optional(z.number().check(z.int())),
      port: z.optional(z.number().check(z.int())),
      path: z.optional(z.string()),
    }),
    timeoutMs: 10_000,
    gated: true,
    scope: 'vm',
    api: 'agentSocket',
    summary: 'How to reach an agent in the guest.',
  }),
  'vm/pids': def({
    params: z.object(Vm),
    result: z.object({ pids: z.array(PositiveInt) }),
    timeoutMs: 10_000,
    gated: true,
    scope: 'vm',
    api: 'pids',
    summary: 'Host processes belonging to the VM.',
  }),
  'vm/threads': def({
    params: z.object(Vm),
    result: z.object({ vcpus: z.array(z.object({ cpu: NonNegativeInt, tid: PositiveInt })) }),
    timeoutMs: 10_000,
    gated: true,
    scope: 'vm',
    api: 'threads',
    summary: 'Host thread id of each vCPU.',
  }),
  'vm/stats': def({
    params: z.object(Vm),
    result: z.object({
      cpuTimeMs: NonNegative,
      memoryRssBytes: NonNegativeInt,
      uptimeMs: NonNegative,
      counters: z._default(z.record(z.string(), z.number()), {}),
    }),
    timeoutMs: 10_000,
    gated: true,
    scope: 'vm',
    api: 'stats',
    summary: 'Resource usage of the VM\'s processes.',
  }),
  'vm/receiveMigration': def({
    params: z.object({
      ...Vm,
      config: VmConfig,
      /** The address of this machine the source reaches it at (an IP or a name); absent: a unix socket, same machine. */
      address: z.optional(z.string().check(z.minLength(1), z.maxLength(253))),
    }),
    result: z.extend(VmResult, {
      uri: MigrationUri,
      /** The stream must come in TLS (the destination verifies the source's certificate): the source is told so. */
      tls: z.optional(z.boolean()),
    }),
    timeoutMs: 60_000,
    gated: true,
    scope: 'new-vm',
    api: 'receiveMigration',
    summary:
      'Live migration, destination half: prepare a VM that waits for an incoming migration (status created) and answer where the source sends it, and `tls: true` when the stream must come in TLS. It runs (event `running`) once the stream has come in whole.',
    record: 'create',
    since: '1.1.0',
  }),
  'vm/migrate': def({
    params: z.object({
      ...Vm,
      uri: MigrationUri,
      /**
       * The destination answered tls: send the stream in TLS, or refuse (NotSupported) without sending: a plaintext
       * stream would only be cut by the destination's handshake. Absent: the destination did not ask for it.
       */
      tls: z.optional(z.boolean()),
      progressToken: z.optional(ProgressToken),
    }),
    result: z.object({
      /** How long the guest ran nowhere (stopped here, not yet running there), as the VMM measured it when it did. */
      downtimeMs: z.optional(NonNegative),
      totalMs: NonNegative,
      transferredBytes: NonNegativeInt,
    }),
    timeoutMs: 600_000,
    gated: true,
    scope: 'vm',
    api: 'migrate',
    progress: true,
    summary:
      'Live migration, source half: send a running VM to the uri a destination\'s vm/receiveMigration answered (in TLS when it answered `tls: true`; a plugin that cannot refuses with NotSupported). Success means the guest runs there and nothing of it here: the VM is gone from this plugin. A failure leaves it running here.',
    record: 'hand-off',
    since: '1.1.0',
  }),
  'image/ensure': def({
    params: z.object({ path: AbsPath, format: z._default(z.enum(['raw', 'qcow2']), 'raw'), sizeBytes: z.optional(PositiveInt) }),
    result: z.object({ path: AbsPath, format: z.enum(['raw', 'qcow2']), sizeBytes: NonNegativeInt, created: z.boolean() }),
    timeoutMs: 120_000,
    gated: true,
    scope: 'plugin',
    api: 'ensureImage',
    idempotent: true,
    summary: 'Make sure a backing image exists (creating an empty one of sizeBytes if absent).',
  }),
  'image/create': def({
    params: z.object({
      path: AbsPath,
      format: z._default(z.enum(['raw', 'qcow2']), 'qcow2'),
      backingFile: z.optional(AbsPath),
      sizeBytes: z.optional(PositiveInt),
      cloudInit: z.optional(z.object({ seedPath: AbsPath, userData: z.string(), metaData: z.string(), networkConfig: z.optional(z.string()) })),
    }),
    result: z.object({ path: AbsPath, seedPath: z.optional(AbsPath) }),
    timeoutMs: 120_000,
    gated: true,
    scope: 'plugin',
    api: 'createImage',
    summary: 'Create a disk (an overlay on backingFile when given) and optionally a cloud-init NoCloud seed.',
  }),
  'image/delete': def({
    params: z.object({ path: AbsPath }),
    result: Empty,
    timeoutMs: 30_000,
    gated: true,
    scope: 'plugin',
    api: 'deleteImage',
    idempotent: true,
    summary: 'Delete an image file; deleting a missing one succeeds.',
  }),
} as const;

export type Methods = typeof methods;
export type MethodName = keyof Methods;
export type ParamsOf<M extends MethodName> = z.output<Methods[M]['params']>;
export type ParamsInputOf<M extends MethodName> = z.input<Methods[M]['params']>;
export type ResultOf<M extends MethodName> = z.output<Methods[M]['result']>;
export type ResultInputOf<M extends MethodName> = z.input<Methods[M]['result']>;

export const METHOD_NAMES = Object.keys(methods) as MethodName[];

/** The table entry widened to MethodDef, for code that walks every method alike. */
export function methodDef(name: MethodName): MethodDef {
  return methods[name];
}

/** The protocol version that added `name`. */
export function methodSince(name: MethodName): string {
  return methodDef(name).since ?? FIRST_PROTOCOL_VERSION;
}

/**
 * Whether a session of protocol `version` has `name` (a version has every method of its major added up to it).
 * A method of the first version is in every session (both sides accept only their own major), so the versions are
 * compared only for a later one: every call on both sides asks.
 */
export function inProtocol(name: MethodName, version: string): boolean {
  const since = methodDef(name).since;
  return since === undefined || compareVersions(since, version) <= 0;
}

export function isMethodName(name: string): name is MethodName {
  return Object.hasOwn(methods, name);
}

/** Gated methods: what a plugin may advertise. */
export const GATED_METHODS = METHOD_NAMES.filter((m) => methods[m].gated);

/** Methods that bring a VM into existence (scope `new-vm`). */
export type NewVmMethod = { [M in MethodName]: Methods[M]['scope'] extends 'new-vm' ? M : never }[MethodName];
/** Methods the host speaks itself (scope `session`); a plugin's handlers answer the others. */
export type SessionMethod = { [M in MethodName]: Methods[M]['scope'] extends 'session' ? M : never }[MethodName];

/** The wire name of the session method playing `role`. */
export function sessionMethod<R extends SessionRole>(role: R): { [M in SessionMethod]: Methods[M]['session'] extends R ? M : never }[SessionMethod] {
  const name = METHOD_NAMES.find((m) => methods[m].scope === 'session' && methodDef(m).session === role);
  if (name === undefined) throw new Error(`no session method plays ${role}`);
  return name as never;
}

/** The live-migration pair, by part: the host's hand-off (PluginHost.migrate) names them through this. */
export const MIGRATION_METHODS = { receive: 'vm/receiveMigration', send: 'vm/migrate' } as const satisfies Record<string, MethodName>;

/** Default deadline of a vendor extension call (`x-<vendor>/<name>`), which the table does not list. */
export const EXTENSION_TIMEOUT_MS = 30_000;
