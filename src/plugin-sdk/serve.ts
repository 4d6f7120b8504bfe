import { format } from 'node:util';
import { startupSnapshot } from 'node:v8';
// By name from zod's core: `z.core.$ZodError` would make esbuild keep the whole of z.core, its 60 locales with it.
import { $ZodError } from 'zod/v4/core';
import {
  allowedFrom,
  Capabilities,
  defaultErrorData,
  ErrorCode,
  InitializeParams,
  inProtocol,
  isMethodName,
  isVmMethod,
  METHOD_NAMES,
  methods,
  methodDef,
  methodSince,
  negotiateVersion,
  openRpcDocument,
  PROTOCOL_VERSIONS,
  sessionMethod,
  STATUS_CHANGING,
  toIssues,
  transition,
  type CapabilitiesInput,
  type InitializeResult,
  type Json,
  type MethodName,
  type ParamsOf,
  type PluginInfo,
  type ResultInputOf,
  type SessionMethod,
  type VmEvent,
  type VmStatus,
} from 'hvplug/protocol';
// The codec itself, not hvplug/transport: its index also holds the vscode-jsonrpc reader and writer of the daemon's API.
import { DEFAULT_MAX_MESSAGE_BYTES } from '../transport/framing.js';
import { listenForHosts, parseCommandLine, UsageError, type CommandLine, type FlagValues, type ListenOptions, type Listening } from './listen.js';
import { answeredAsIs, IncomingCall, isThenable, RpcEndpoint, RpcError, type RequestHandler } from './rpc.js';
import { PluginError } from './errors.js';
import { stderrLogger, type Logger } from './log.js';
import { rehearse, type Rehearsal } from './rehearsal.js';

/** An event as a handler emits it; the SDK stamps seq (per VM) and time. */
export type EventInput = VmEvent extends infer E ? (E extends VmEvent ? Omit<E, 'seq' | 'time'> : never) : never;

export interface Session {
  /** The host's initialize request: state and runtime directories, log level. */
  readonly init: InitializeParams;
  /** The protocol version the handshake chose: methods added after it are neither advertised nor served. */
  readonly protocolVersion: string;
  readonly log: Logger;
  emit(event: EventInput): void;
}

export interface CallContext {
  /** Aborted when the host cancels the call or its deadline passes. */
  readonly signal: AbortSignal;
  /** Whether the host has cancelled the call, read without making the signal (SerialQueue takes the context so). */
  readonly cancelled: boolean;
  readonly session: Session;
  readonly log: Logger;
  /** Reports progress when the caller asked for it (params.progressToken); a no-op otherwise. */
  progress(message: string, percentage?: number): void;
}

type HypervisorMethod = Exclude<MethodName, SessionMethod>;

export type Handler<M extends MethodName> = (
  params: ParamsOf<M>,
  ctx: CallContext,
) => Promise<ResultInputOf<M>> | ResultInputOf<M>;

export type Handlers = { [M in HypervisorMethod]?: Handler<M> };

export interface ExtensionHandler {
  summary?: string;
  params?: Record<string, Json>;
  result?: Record<string, Json>;
  handler: (params: unknown, ctx: CallContext) => Promise<Json> | Json;
}

export interface PluginDefinition {
  info: PluginInfo;
  /** Protocol versions this plugin speaks; defaults to the SDK's. */
  protocolVersions?: readonly string[];
  /** Methods are derived from `handlers` unless given; every advertised method must have a handler. */
  capabilities: Omit<CapabilitiesInput, 'methods' | 'extensions'> & { methods?: MethodName[] };
  /** JSON Schema of VmConfig.plugin. */
  configSchema?: Record<string, Json>;
  handlers: Handlers;
  extensions?: Record<string, ExtensionHandler>;
  /**
   * The status of a VM this process serves, undefined for one it does not know. Given, the SDK refuses a
   * call the state machine (LIFECYCLE in hvplug/protocol) forbids in that status with InvalidState before
   * the handler runs, unless another call that may change the VM's status is under way on it (the handler,
   * queued behind that call, decides then). Must be cheap and must not throw.
   */
  vmStatus?(vmId: string): VmStatus | undefined;
  /** Runs after a successful handshake, before the result is sent: set up directories, re-read state. */
  onInitialize?(session: Session): Promise<void> | void;
  /** Release control connections; VMs keep running. Runs on shutdown and on stdin EOF. */
  onShutdown?(): Promise<void> | void;
  /**
   * The plugin's logger, writing to stderr (the host reads pino's JSON lines there, src/core/plugin-log.ts), its
   * level set from the host's initialize. A pino logger fits (`pino({ ... }, pino.destination(2))`); by default
   * the SDK's own writes the same lines without loading pino.
   */
  logger?: Logger;
}

export interface ServeOptions {
  input?: NodeJS.ReadableStream & import('node:stream').Readable;
  output?: import('node:stream').Writable;
  /** Exit the process when the host goes away (stdin EOF) or says exit. Tests that serve in-process turn it off. */
  exitProcess?: boolean;
  /**
   * Listen for hosts instead of serving on stdio. Without input or output given, `--listen` on the command
   * line does the same (see listenOptionsFromArgv); false serves on stdio whatever the command line says.
   */
  listen?: ListenOptions | false;
  /** Directories used instead of the ones the host's initialize names (a listening plugin's own). */
  dirs?: { stateDir?: string; runtimeDir?: string };
  /**
   * The plugin's own command-line flags, names without dashes, each `--name <value>`: a definition given as a
   * function gets their values. The command line is then parsed strictly on stdio too (see parseCommandLine).
   */
  flags?: readonly string[];
  /**
   * Played while the plugin's startup snapshot is built, on a fresh definition: the handshake and these calls, whose
   * compiled code is then in the snapshot (see rehearsal.ts). Without it the SDK rehearses the handshake alone.
   */
  rehearsal?: Rehearsal;
}

/** A handler's failure as the error to answer (an RpcError, or one that looks like vscode-jsonrpc's ResponseError, stands). */
function toRpcError(err: unknown, method: string): unknown {
  if (answeredAsIs(err)) return err;
  if (err instanceof PluginError) return new RpcError(err.code, err.message, err.data ?? defaultErrorData(err.codeName, method, err.message));
  // $ZodError: what zod's classic and mini APIs both throw, a plugin's own schemas being of either.
  if (err instanceof $ZodError) {
    return new RpcError(ErrorCode.InvalidConfig, `invalid config: ${err.message}`, { issues: toIssues(err) });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new RpcError(ErrorCode.InternalError, message);
}

const NO_PROGRESS = (): void => undefined;

/**
 * A handler's CallContext: a class, so that a call costs one small object and no closures (progress is one only
 * when the caller asked for progress). Destructured members still work: signal is a getter, progress a function
 * of its own.
 */
class Context implements CallContext {
  readonly progress: (message: string, percentage?: number) => void;

  constructor(
    private readonly call: IncomingCall,
    readonly session: Session,
    readonly log: Logger,
    progressToken: unknown,
    send: (token: string | number, message: string, percentage?: number) => void,
  ) {
    this.progress =
      typeof progressToken === 'string' || typeof progressToken === 'number'
        ? (message, percentage) => send(progressToken, message, percentage)
        : NO_PROGRESS;
  }

  get signal(): AbortSignal {
    return this.call.signal;
  }

  get cancelled(): boolean {
    return this.call.cancelled;
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Stdout carries the protocol and nothing else: console output and stray writes go to stderr, where the
 * host reads them as log lines. Returns the real stdout writer for the transport.
 */
function guardStdout(): (frame: string) => boolean {
  const stdout = process.stdout;
  const realWrite = stdout.write.bind(stdout) as (frame: string) => boolean;
  const toStderr = (...args: unknown[]): void => {
    process.stderr.write(`${format(...args)}\n`);
  };
  console.log = toStderr;
  console.info = toStderr;
  console.debug = toStderr;
  console.trace = toStderr;
  console.dir = toStderr;
  stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) =>
    (process.stderr.write as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest)) as typeof stdout.write;
  return realWrite;
}

export interface ServedPlugin {
  /**
   * Stops serving at once, for a caller that owns the streams (tests serving in-process): nothing more is read or
   * written, what is held is dropped, the calls under way go unanswered, and `closed` resolves; onShutdown does not
   * run, and the streams are left open. A listening plugin stops listening and cuts its host.
   */
  close(): void;
  /** Resolves when the host has gone (EOF or exit), or on close(). */
  closed: Promise<void>;
}

/** What a plugin's definition resolves to before any stdio exists (at snapshot build time, when there is one). */
interface Prepared {
  advertised: ReadonlySet<MethodName>;
  capabilities: Capabilities;
}

function prepare(def: PluginDefinition): Prepared {
  const advertised: MethodName[] = def.capabilities.methods ?? (Object.keys(def.handlers) as MethodName[]);
  for (const m of advertised) {
    if (!(m in def.handlers)) throw new Error(`plugin ${def.info.name} advertises ${m} but has no handler for it`);
    if (!methods[m]?.gated) throw new Error(`plugin ${def.info.name} advertises ${m}, which is not a gated method`);
  }
  const capabilities = Capabilities.parse({
    ...def.capabilities,
    methods: advertised,
    extensions: Object.fromEntries(
      Object.entries(def.extensions ?? {}).map(([name, e]) => [name, { summary: e.summary, params: e.params ?? {}, result: e.result ?? {} }]),
    ),
  });
  return { advertised: new Set(advertised), capabilities };
}

/**
 * Runs a plugin on stdin/stdout: handshake, dispatch from the method table, events, cancellation.
 *
 * Run inside `node --build-snapshot` (scripts/bundle.mjs builds a V8 startup snapshot of each plugin), it
 * connects to stdio when the snapshot is started: the plugin's code is then loaded and evaluated before its
 * process exists, which is what makes its cold start cheap. A definition given as an object is checked at
 * build time too; one that depends on the host it runs on (devices it finds, its environment, its own flags:
 * ServeOptions.flags) is given as a function, called with the flags' values when the plugin starts.
 */
export function servePlugin(definition: PluginDefinition | ((flags: FlagValues) => PluginDefinition), opts: ServeOptions = {}): ServedPlugin {
  const checked = typeof definition === 'function' ? undefined : prepare(definition);
  const start = (): ServedPlugin => {
    // Read when the plugin starts (in a snapshot, not when it is built): the command line is the process's.
    const readArgv = !(opts.input || opts.output) && (opts.listen === undefined || (opts.flags?.length ?? 0) > 0);
    const { listen: fromArgv, flags } = readArgv ? usage(() => commandLine(opts.flags ?? [])) : { listen: undefined, flags: {} };
    const listen = opts.listen ?? fromArgv;
    const def = typeof definition === 'function' ? usage(() => definition(flags)) : definition;
    if (listen) return listenServed(def, checked ?? prepare(def), listen);
    return serve(def, checked ?? prepare(def), opts);
  };
  if (!startupSnapshot.isBuildingSnapshot()) return start();
  let served: ServedPlugin | undefined;
  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  startupSnapshot.setDeserializeMainFunction(() => {
    served = start();
    void served.closed.then(resolveClosed);
  });
  // The snapshot is taken once the builder's event loop is empty: after the rehearsal. One that fails fails the build,
  // which then leaves the plugin to start from its bundle (scripts/bundle.mjs).
  rehearse((def, streams) => serve(def, prepare(def), streams), opts.rehearsal).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
  return {
    close: () => {
      if (!served) throw new Error('a plugin built into a startup snapshot connects when the snapshot starts');
      served.close();
    },
    closed,
  };
}

function commandLine(pluginFlags: readonly string[]): CommandLine {
  // Started from a startup snapshot there is no script name: the plugin's arguments follow node's path.
  const fromSnapshot = process.execArgv.includes('--snapshot-blob');
  return parseCommandLine(process.argv.slice(fromSnapshot ? 1 : 2), pluginFlags);
}

/** Runs `fn`; a usage mistake (the command line's, or one a plugin finds in its flags) ends the process with status 2. */
function usage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
}

/**
 * Serves each host that connects, one at a time, with the same definition: the plugin's VMs belong to the
 * process, not to a connection. The address is announced on stdout, one line, `listening <address>`, for
 * whoever started the plugin (a port of 0 is then known).
 */
function listenServed(def: PluginDefinition, prepared: Prepared, listen: ListenOptions): ServedPlugin {
  const log = def.logger ?? stderrLogger(def.info.name);
  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const dirs = { stateDir: listen.stateDir, runtimeDir: listen.runtimeDir };
  const listening = listenPlugin(def, listen, { note: (m) => log.info(m), dirs, prepared });
  void listening.then(
    (l) => {
      process.stdout.write(`listening ${l.address}\n`);
      // The VMs are not the process's children to take along: they keep running, as on a host's goodbye.
      const stop = (): void => void l.close().then(resolveClosed).finally(() => process.exit(0));
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    },
    (err: unknown) => {
      log.error({ err }, `cannot listen on ${listen.address}`);
      process.stderr.write(`cannot listen on ${listen.address}: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
  return {
    close: () => void listening.then((l) => l.close()).then(resolveClosed, () => resolveClosed()),
    closed,
  };
}

/** Listens for hosts in this process (a plugin's main uses servePlugin with --listen; tests, this). */
export function listenPlugin(
  def: PluginDefinition,
  listen: ListenOptions,
  extra: { note?: (message: string) => void; dirs?: ServeOptions['dirs']; prepared?: Prepared } = {},
): Promise<Listening> {
  const prepared = extra.prepared ?? prepare(def);
  const dirs = extra.dirs ?? { stateDir: listen.stateDir, runtimeDir: listen.runtimeDir };
  return listenForHosts(def.info.name, listen, {
    serve: (socket) => serve(def, prepared, { input: socket, output: socket, exitProcess: false, dirs }),
    note: extra.note ?? (() => undefined),
  });
}

function serve(def: PluginDefinition, { advertised, capabilities }: Prepared, opts: ServeOptions): ServedPlugin {
  const exitProcess = opts.exitProcess ?? true;
  const maxMessageBytes = Number(process.env.HVPLUG_MAX_MESSAGE_BYTES ?? DEFAULT_MAX_MESSAGE_BYTES);
  const input = opts.input ?? process.stdin;
  const output = opts.output ?? process.stdout;
  const log = def.logger ?? stderrLogger(def.info.name);
  const requests = new Map<string, RequestHandler>();
  let session: Session | undefined;
  const seqs = new Map<string, number>();
  const started = Date.now();

  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let finishing = false;
  const finish = async (): Promise<void> => {
    if (finishing) return;
    finishing = true;
    try {
      await def.onShutdown?.();
    } catch (err) {
      log.error({ err }, 'shutdown hook failed');
    }
    rpc.flush();
    resolveClosed();
    if (exitProcess) process.exit(0);
  };

  const rpc: RpcEndpoint = new RpcEndpoint({
    input,
    output,
    write: opts.output ? (frames) => output.write(frames) : guardStdout(),
    maxMessageBytes,
    requests,
    notifications: new Map([['exit', () => rpc.end()]]),
    dropped: (reason) => log.warn(`dropped a message from the host: ${reason}`),
    failed: (err, what) => log.error({ err }, what),
    ended: (err) => {
      // The stream can no longer be trusted (bad framing, over-size message): say so and go.
      if (err !== undefined) log.error({ err }, 'protocol error on stdin');
      void finish();
    },
  });

  const emit = (event: EventInput): void => {
    const seq = seqs.get(event.vmId) ?? 0;
    seqs.set(event.vmId, seq + 1);
    // Object.assign rather than `{ ...event, seq, time }`: see ServedVm.emit.
    rpc.notify('vm/event', Object.assign({}, event, { seq, time: new Date().toISOString() }));
  };

  const handshake = sessionMethod('handshake');
  requests.set(handshake, async (raw) => {
    const parsed = InitializeParams.safeParse(raw);
    if (!parsed.success) {
      throw new RpcError(ErrorCode.InvalidParams, `${handshake}: ${parsed.error.message}`, { method: handshake, issues: toIssues(parsed.error) });
    }
    const ours = def.protocolVersions ?? PROTOCOL_VERSIONS;
    const chosen = negotiateVersion(ours, parsed.data.protocolVersions);
    if (chosen === undefined) {
      throw new RpcError(
        ErrorCode.ProtocolVersionMismatch,
        `no common protocol version: host speaks ${parsed.data.protocolVersions.join(', ')}, plugin speaks ${ours.join(', ')}`,
        { host: parsed.data.protocolVersions, plugin: [...ours] },
      );
    }
    log.level = parsed.data.logLevel;
    const init = { ...parsed.data, ...definedOnly(opts.dirs ?? {}) };
    session = { init, protocolVersion: chosen, log, emit };
    await def.onInitialize?.(session);
    const result: InitializeResult = {
      protocolVersion: chosen,
      plugin: def.info,
      // A host of an earlier version is not told of what it does not know.
      capabilities: { ...capabilities, methods: capabilities.methods.filter((m) => isMethodName(m) && inProtocol(m, chosen)) },
      configSchema: def.configSchema ?? {},
    };
    return result;
  });

  const requireSession = (method: string): Session => {
    if (!session) throw new RpcError(ErrorCode.InvalidRequest, `${method} before ${handshake}`);
    return session;
  };

  const sendProgress = (token: string | number, message: string, percentage?: number): void => {
    rpc.notify('$/progress', { token, value: { message, percentage } });
  };
  const contextFor = (s: Session, call: IncomingCall, progressToken: unknown): CallContext => new Context(call, s, log, progressToken, sendProgress);

  requests.set(sessionMethod('goodbye'), async () => {
    await def.onShutdown?.();
    return {};
  });
  requests.set(sessionMethod('ping'), () => ({ uptimeMs: Date.now() - started }));
  requests.set(sessionMethod('discover'), () => openRpcDocument(capabilities.extensions));

  // Per VM, the calls under way that may change its status: while there is one, a status read now may be
  // stale by the time the handler runs (plugins queue a VM's calls), so the early refusal stands aside.
  const changingCalls = new Map<string, number>();
  /** A call that held `vmId` in changingCalls ended (undefined: it held nothing). */
  const changeEnded = (vmId: string | undefined): void => {
    if (vmId === undefined) return;
    const left = (changingCalls.get(vmId) ?? 1) - 1;
    if (left > 0) changingCalls.set(vmId, left);
    else changingCalls.delete(vmId);
  };
  const refuseForbidden = (method: string, vmId: string): void => {
    if (!def.vmStatus || !isVmMethod(method) || changingCalls.has(vmId)) return;
    const current = def.vmStatus(vmId);
    if (current === undefined || transition(method, current).verdict !== 'forbidden') return;
    const required = allowedFrom(method);
    throw new RpcError(ErrorCode.InvalidState, `${method}: VM ${vmId} is ${current}; this needs ${required.join(' or ')}`, {
      vmId,
      current,
      required,
    });
  };

  for (const name of METHOD_NAMES) {
    const spec = methodDef(name);
    if (spec.scope === 'session') continue;
    // What each call would otherwise ask again of tables that do not change: the method's own facts.
    // Undefined unless advertised: a plugin's handlers are those of its definition, read as it is served.
    const handler = advertised.has(name) ? (def.handlers[name as HypervisorMethod] as Handler<MethodName> | undefined) : undefined;
    const added = spec.since !== undefined;
    const vmScoped = isVmMethod(name);
    const changes = vmScoped && STATUS_CHANGING.has(name as never);
    // Not async: a handler that answers at once (most reads of a VM) is answered in the same turn, without the
    // promise and the turns an async wrapper costs per call; one that returns a promise is waited for.
    requests.set(name, (raw, call) => {
      const s = requireSession(name);
      if (!handler) {
        throw new RpcError(ErrorCode.NotSupported, `${name}: not supported by ${def.info.name}`, {
          method: name,
          reason: 'not advertised',
        });
      }
      // A method of the first version is in every session (inProtocol): only a later one is looked at.
      if (added && !inProtocol(name, s.protocolVersion)) {
        throw new RpcError(ErrorCode.NotSupported, `${name}: not in protocol ${s.protocolVersion}, which this session speaks`, {
          method: name,
          reason: `came in protocol ${methodSince(name)}`,
        });
      }
      const parsed = spec.params.safeParse(raw ?? {});
      if (!parsed.success) {
        throw new RpcError(ErrorCode.InvalidParams, `${name}: invalid params: ${parsed.error.message}`, {
          method: name,
          issues: toIssues(parsed.error),
        });
      }
      const params = parsed.data as ParamsOf<MethodName>;
      const vmId = vmScoped ? (params as { vmId: string }).vmId : undefined;
      if (vmId !== undefined) refuseForbidden(name, vmId);
      // Set only for a call that may change the VM's status: what it holds in changingCalls, released as it ends.
      const changing = changes ? vmId : undefined;
      if (changing !== undefined) changingCalls.set(changing, (changingCalls.get(changing) ?? 0) + 1);
      let out: unknown;
      try {
        out = handler(params, contextFor(s, call, (params as { progressToken?: unknown }).progressToken));
      } catch (err) {
        changeEnded(changing);
        throw toRpcError(err, name);
      }
      if (!isThenable(out)) {
        changeEnded(changing);
        return out;
      }
      return Promise.resolve(out).then(
        (result) => {
          changeEnded(changing);
          return result;
        },
        (err: unknown) => {
          changeEnded(changing);
          throw toRpcError(err, name);
        },
      );
    });
  }

  for (const [name, ext] of Object.entries(def.extensions ?? {})) {
    requests.set(name, async (raw, call) => {
      const s = requireSession(name);
      try {
        return await ext.handler(raw, contextFor(s, call, undefined));
      } catch (err) {
        throw toRpcError(err, name);
      }
    });
  }

  return {
    close: () => {
      rpc.stop();
      resolveClosed();
    },
    closed,
  };
}
