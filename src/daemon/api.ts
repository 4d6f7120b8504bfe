import { createHash } from 'node:crypto';
import { join } from 'node:path';
import * as z from 'zod/mini';
import {
  AbsPath,
  Id,
  InitializeResult,
  isMethodName,
  METHOD_NAMES,
  MIGRATION_METHODS,
  MigrationUri,
  methodDef,
  methods,
  PartialVmConfig,
  PluginState,
  VmConfig,
  VmEvent,
  VmStatus,
  type MethodName,
  type NotificationName,
} from 'hvplug/protocol';
import { VmRecord } from '../core/state-store.js';

/**
 * The daemon's management API: JSON-RPC 2.0 with Content-Length framing on a unix socket, as plugins speak it.
 * Every non-session method of the protocol table is served under its own name, with its own params: a `vm`-scoped
 * call names its VM (vmId), and a `plugin`- or `new-vm`-scoped one is wrapped in {plugin, params} since the table
 * has no field for which plugin. The few calls that are the host's rather than a plugin's are in DAEMON_METHODS.
 */

/**
 * Bumped when a client of one hvplug could misread a daemon of another. 2: event subscription (hvplug/subscribe,
 * hvplug/event, hvplug/eventsDropped) and its host-side `deleted` event. 3: live migration (hvplug/migrate and the
 * destination's hvplug/prepareIncoming, commitIncoming, abortIncoming; the hello's identity); vm/migrate and
 * vm/receiveMigration are no longer served raw; hvplug/callRef, the CLI fast path's one request.
 */
export const API_VERSION = 3;

/** What of a hello every version has, read before the rest so that a daemon of another version is named, not misparsed. */
export const HelloVersion = z.object({ apiVersion: z.number().check(z.int()), version: z.optional(z.string().check(z.maxLength(100))) });

/** Said by the daemon, not a plugin: the VM and its record are gone (vm/delete answered). */
export const VmDeletedEvent = z.object({ vmId: Id, time: z.string(), type: z.literal('deleted') });
export type VmDeletedEvent = z.output<typeof VmDeletedEvent>;

/** A request is a VM config or a device at most: a client sending more is broken or hostile. */
export const MAX_REQUEST_BYTES = 1024 * 1024;
/** Answers carry whole record lists; a state directory of thousands of VMs still fits. */
export const MAX_ANSWER_BYTES = 16 * 1024 * 1024;
/** Calls one client may have under way at once; past it further calls are refused, not queued. */
export const MAX_CALLS_PER_CLIENT = 64;
/** Clients at once; past it a new connection is closed at once. */
export const MAX_CLIENTS = 256;
/**
 * Bytes of answers a client may leave unread in the daemon's socket buffer before it is disconnected: a client
 * that sends but never reads would otherwise grow the daemon's memory with every answer.
 */
export const MAX_UNREAD_ANSWER_BYTES = 8 * 1024 * 1024;

/**
 * Bytes a subscriber may leave unread in the daemon's socket buffer before further events are dropped (and counted, and
 * the count sent once it reads again): below MAX_UNREAD_ANSWER_BYTES, so a slow reader of events loses events, not its
 * connection, and never grows the daemon's memory.
 */
export const MAX_UNREAD_EVENT_BYTES = 1024 * 1024;
/** VMs one subscription may name; more is a broken client (the filter is a set, looked up per event). */
export const MAX_SUBSCRIBED_VMS = 1024;

/** The daemon's own calls (records, attach) may start a plugin and re-attach a VM: their deadline covers both. */
export const OWN_CALL_TIMEOUT_MS = 120_000;

/**
 * hvplug/migrate's deadline: the destination's prepareIncoming and commitIncoming (each an own call's) around the
 * source plugin's vm/migrate (the method table's). Each step keeps its own deadline in the daemon; this is the sum.
 */
export const MIGRATE_CALL_TIMEOUT_MS = 2 * OWN_CALL_TIMEOUT_MS + methods[MIGRATION_METHODS.send].timeoutMs;

/** The protocol's progress notification, forwarded to the client that gave the token. */
export const PROGRESS = '$/progress' satisfies NotificationName;

const PluginName = z.string().check(z.minLength(1), z.maxLength(128));
/** A client's progressToken: what it gave, handed back with each $/progress of the call. */
export const ProgressToken = z.union([z.string().check(z.maxLength(128)), z.number()]);
/** The address of the destination machine the source reaches it at (an IP or a name), as vm/receiveMigration takes it. */
const MigrationAddress = z.string().check(z.minLength(1), z.maxLength(253));
const RecordError = z.object({ where: z.string(), message: z.string() });

/** A VM event, sent to every client subscribed to it (hvplug/subscribe). */
export const EVENT_NOTICE = 'hvplug/event';
export const EventNotice = z.object({ plugin: PluginName, name: z.optional(z.string()), event: z.union([VmEvent, VmDeletedEvent]) });
export type EventNotice = z.output<typeof EventNotice>;
/** Events a subscriber missed because it read too slowly; sent once it has read what was queued. */
export const DROPPED_NOTICE = 'hvplug/eventsDropped';
export const DroppedNotice = z.object({ count: z.number().check(z.int(), z.positive()) });

export const Hello = z.object({
  apiVersion: z.number().check(z.int()),
  pid: z.number().check(z.int(), z.positive()),
  stateDir: z.string(),
  runtimeDir: z.string(),
  socket: z.string(),
  version: z.string(),
  /** How a live migration's other host names this one in its record (PluginHost.identity). */
  identity: z.string(),
});
export type Hello = z.output<typeof Hello>;

/** What a client needs to drive a plugin's VMs through a ShimHypervisor of its own. */
export const PluginView = z.object({
  name: PluginName,
  info: InitializeResult,
  /** The spec's defaults, merged under a new VM's raw config on the client as the host merges them. */
  defaults: PartialVmConfig,
});
export type PluginView = z.output<typeof PluginView>;

export const AttachedVm = z.object({
  plugin: PluginView,
  status: VmStatus,
  config: VmConfig,
  state: z.optional(PluginState),
  ownedBy: z.optional(z.string()),
});
export type AttachedVm = z.output<typeof AttachedVm>;

/** A live migration's outcome, as PluginHost.migrate answers it. */
export const MigrationReport = z.object({
  vmId: Id,
  uri: MigrationUri,
  /** The stream went in TLS, as the destination asked (the VMM's own credentials). */
  tls: z.boolean(),
  downtimeMs: z.optional(z.number().check(z.nonnegative())),
  totalMs: z.number().check(z.nonnegative()),
  transferredBytes: z.number().check(z.int(), z.nonnegative()),
  elapsedMs: z.number().check(z.nonnegative()),
});

const Nothing = z.object({});

/**
 * The methods hvplug/callRef sends: vm-scoped, taking a vmId and nothing else, gated at most on capabilities.methods
 * (the one gate callRef checks before the call), with no progress to forward. Served raw as well (SERVED_METHODS).
 */
export const CALL_REF_METHODS: readonly MethodName[] = METHOD_NAMES.filter((m) => {
  const def = methodDef(m);
  const shape = (def.params as { shape?: Record<string, unknown> }).shape;
  return def.scope === 'vm' && def.devices === undefined && !def.progress && Object.keys(shape ?? {}).join() === 'vmId' && !(Object.values(MIGRATION_METHODS) as MethodName[]).includes(m);
});

/**
 * The `data.declined` of hvplug/callRef's refusal to act: a call the full CLI would word otherwise, or would not make.
 * Nothing was done; the client does it the long way. Distinct from every error of the call itself, which carry
 * `data.hvplug` or none (errors.ts).
 */
export const CALL_REF_DECLINED = ['apiVersion', 'ref', 'gone', 'owned', 'capability'] as const;
/** The JSON-RPC code of that refusal: none of the protocol's (-31001...) nor errors.ts's (-31050). */
export const CALL_REF_DECLINED_CODE = -31051;
export const CallRefDeclined = z.object({ declined: z.enum(CALL_REF_DECLINED) });
export type CallRefDeclined = z.output<typeof CallRefDeclined>;

/**
 * The daemon's own calls: each with its params and result schemas, parsed on both sides, and its deadline when an
 * own call's (OWN_CALL_TIMEOUT_MS) is not enough.
 */
export const DAEMON_METHODS = {
  hello: { name: 'hvplug/hello', params: z.object({}), result: Hello },
  records: { name: 'hvplug/records', params: z.object({}), result: z.object({ records: z.array(VmRecord), errors: z.array(RecordError) }) },
  /** A VM by id, re-attached by the daemon if it was not yet; null when there is no record. */
  attach: { name: 'hvplug/attach', params: z.object({ vmId: Id }), result: z.nullable(AttachedVm) },
  /**
   * A vm-scoped call by the user's reference to the VM (id, name or id prefix, core/vm-ref.ts's rule), in one round
   * trip: what the CLI's fast path sends for pause and resume. The daemon resolves the reference, and makes the call
   * only where the full CLI would make the same one: the client's API version is the daemon's, the reference names
   * one VM, which this host drives, and whose plugin advertises a gated method. Otherwise it answers an error with
   * CallRefDeclined data and does nothing. The call's own outcome is its answer: its result, with the VM's id, or
   * its error as a raw call's.
   */
  callRef: {
    name: 'hvplug/callRef',
    params: z.object({ apiVersion: z.number().check(z.int()), ref: z.string().check(z.minLength(1), z.maxLength(256)), method: z.enum(CALL_REF_METHODS as [MethodName, ...MethodName[]]) }),
    result: z.object({ vmId: Id, result: z.unknown() }),
  },
  plugin: { name: 'hvplug/plugin', params: z.object({ plugin: PluginName }), result: PluginView },
  /** Drops the record of a VM the daemon does not drive (its delete already went through it, or never could). */
  forget: { name: 'hvplug/forget', params: z.object({ vmId: Id }), result: z.object({}) },
  /**
   * From now on, the connection gets an EVENT_NOTICE per VM event of the host (of the VMs named, if any). A second call
   * replaces the first's filter.
   */
  subscribe: { name: 'hvplug/subscribe', params: z.object({ vmIds: z.optional(z.array(Id).check(z.maxLength(MAX_SUBSCRIBED_VMS))) }), result: z.object({}) },
  /**
   * Where a VM's console is. A socket console is joined to the connection (`joined`): after this answer the
   * connection carries the console's bytes both ways, raw, and no more JSON-RPC, so it must be the connection's only
   * call and the client sends nothing before the answer. A log or pty console is only named.
   */
  console: {
    name: 'hvplug/console',
    params: z.object({ vmId: Id }),
    result: z.object({ kind: z.enum(['log', 'socket', 'pty']), path: z.string(), joined: z.boolean() }),
  },
  /**
   * Live migration, source side: the daemon runs PluginHost.migrate of one of its VMs to the host of another state
   * directory on this machine: that directory's daemon, driven through the three calls below, or a host the daemon
   * opens there itself (runtimeDir: its runtime directory, default <stateDir>/run) with its own plugins. $/progress
   * goes to the caller under its progressToken.
   */
  migrate: {
    name: 'hvplug/migrate',
    params: z.object({
      vmId: Id,
      destination: z.object({ stateDir: AbsPath, runtimeDir: z.optional(AbsPath) }),
      plugin: z.optional(PluginName),
      address: z.optional(MigrationAddress),
      progressToken: z.optional(ProgressToken),
    }),
    result: MigrationReport,
    timeoutMs: MIGRATE_CALL_TIMEOUT_MS,
  },
  /** Live migration, destination side (PluginHost.prepareIncoming): the incoming VM's marked record, vm/receiveMigration, the uri. */
  prepareIncoming: {
    name: 'hvplug/prepareIncoming',
    params: z.object({ vmId: Id, plugin: PluginName, config: VmConfig, from: z.string().check(z.minLength(1), z.maxLength(4096)), address: z.optional(MigrationAddress) }),
    /** Where to send the VM, and whether the destination takes it only in TLS (IncomingTarget). */
    result: z.object({ uri: MigrationUri, tls: z.boolean() }),
  },
  /** The source plugin sent the VM: the record loses its mark once the VM runs here (PluginHost.commitIncoming, the commit point). */
  commitIncoming: { name: 'hvplug/commitIncoming', params: z.object({ vmId: Id }), result: Nothing },
  /** The source plugin refused: the incoming VM and its record go (PluginHost.abortIncoming). */
  abortIncoming: { name: 'hvplug/abortIncoming', params: z.object({ vmId: Id }), result: Nothing },
} as const;
export type DaemonMethods = typeof DAEMON_METHODS;

/** Params of a `plugin`- or `new-vm`-scoped method: which plugin, and the method's own params. */
export const PluginCall = z.object({ plugin: PluginName, params: z.record(z.string(), z.unknown()) });
/** Params of a `vm`-scoped method: its own, vmId routing the call. */
export const VmCall = z.looseObject({ vmId: Id });

/**
 * The table's methods the daemon serves: all but the session's, which are the host's business with a plugin, and the
 * migration pair, which only make sense with the record hand-off around them (hvplug/migrate and the destination's
 * calls): a raw vm/migrate would drop the record of a VM that no host of ours received.
 */
const MIGRATION_METHOD_NAMES: readonly MethodName[] = Object.values(MIGRATION_METHODS);
export const SERVED_METHODS: readonly MethodName[] = METHOD_NAMES.filter((m) => methodDef(m).scope !== 'session' && !MIGRATION_METHOD_NAMES.includes(m));

/** The wire params of a call through the daemon, from the shim's params and the plugin it is for. */
export function wireParams(method: string, plugin: string, params: unknown): unknown {
  if (!isMethodName(method) || methodDef(method).scope === 'vm') return params;
  return { plugin, params };
}

/**
 * The socket of the daemon of a state directory: in the runtime directory, named after the state directory so
 * that daemons of two state directories sharing a runtime directory do not meet.
 */
export function socketPath(runtimeDir: string, stateDir: string): string {
  const tag = createHash('sha256').update(stateDir).digest('hex').slice(0, 12);
  return join(runtimeDir, `daemon-${tag}.sock`);
}

/** sun_path holds 108 bytes with its NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** Where the daemon of a state directory says who it is (see lock.ts). */
export const lockPath = (stateDir: string): string => join(stateDir, 'daemon.json');
