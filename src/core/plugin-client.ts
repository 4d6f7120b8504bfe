import type { Logger } from 'pino';
import {
  compareVersions,
  inProtocol,
  InitializeResult,
  isMethodName,
  PROTOCOL_VERSIONS,
  sameMajor,
  sessionMethod,
  toIssues,
  type InitializeParams,
} from 'hvplug/protocol';
import { pluginEnvironment } from './environment.js';
import { HvplugError, PluginExitedError, PluginUnreachableError, TimeoutError, ProtocolError, ProtocolVersionError, ProtocolViolationError } from '../errors/index.js';
import { connectConduit, spawnConduit, type Conduit } from './conduit.js';
import { HostRpc, type RpcCallOptions } from './host-rpc.js';
import { PluginLog } from './plugin-log.js';
import { TokenBucket } from './token-bucket.js';
import type { NotificationListener } from '../shim/channel.js';
import type { PluginSpec } from './plugin-spec.js';
import { FrameReader, FrameWriter } from '../transport/frame-stream.js';
import { DEFAULT_MAX_MESSAGE_BYTES, FramingError } from '../transport/framing.js';
import { resolveExecutable } from './executable.js';
import { BatchedInput, MAX_UNREAD_INPUT_BYTES } from './batched-input.js';

export interface ClientOptions {
  stateDir: string;
  runtimeDir: string;
  logger: Logger;
  logLevel: InitializeParams['logLevel'];
  maxMessageBytes?: number;
  hostEnv?: NodeJS.ProcessEnv;
  hostVersion: string;
  /** Test hook: the versions offered at initialize. */
  protocolVersions?: readonly string[];
  /** Sees every message on the wire, both directions, as parsed JSON (the conformance suite validates them). */
  trace?: (direction: 'send' | 'receive', message: unknown) => void;
}

export type CallOptions = RpcCallOptions;

export interface ExitInfo {
  code: number | null;
  signal: string | null;
}


/**
 * Notifications a plugin may send: NOTIFICATION_BURST at once, NOTIFICATION_RATE per second sustained. Each one
 * costs the host a schema check, listeners and possibly a record write; past the budget the plugin is cut off
 * (ProtocolError, killed, restarted) rather than let it starve the host and every other plugin.
 */
export const NOTIFICATION_RATE = 2_000;
export const NOTIFICATION_BURST = 20_000;

/**
 * How long a plugin that closed its stdout (or stdin) has to exit before it is called broken and killed: a
 * plugin on its way out closes its pipes a moment before its exit is seen, and its exit code and last stderr
 * lines say more than "closed its stdout".
 */
const STDIO_CLOSE_GRACE_MS = 250;

/** Origins of connected plugins, which have no pid: negative, so that they never meet a pid. */
let nextConnectionOrigin = -1;

/**
 * One running plugin, spawned or connected to (see Conduit): handshake, calls with deadlines and
 * cancellation, crash and protocol-error detection, graceful-then-forced shutdown. Knows nothing of VMs.
 */
export class PluginClient {
  private fatal: HvplugError | undefined;
  private readonly failureListeners = new Set<(err: HvplugError) => void>();
  private info_: InitializeResult | undefined;
  private exitSeen = false;
  private stdioTimer: NodeJS.Timeout | undefined;
  readonly exited: Promise<ExitInfo>;
  /** Tells this plugin's events apart from another process's or connection's (each numbers its own). */
  readonly origin: number;

  private readonly rpc: HostRpc;
  private readonly input: BatchedInput;
  private readonly listeners = new Set<NotificationListener>();
  private readonly budget = new TokenBucket(NOTIFICATION_RATE, NOTIFICATION_BURST);
  private readonly log: PluginLog;
  private readonly logger: Logger;

  private constructor(
    readonly spec: PluginSpec,
    private readonly conduit: Conduit,
    opts: ClientOptions,
  ) {
    const maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const { fromPlugin, toPlugin, stderr, pid, outputName } = conduit;
    this.origin = pid ?? nextConnectionOrigin--;
    this.logger = opts.logger.child({ plugin: spec.name, ...(pid === undefined ? { at: conduit.where } : { pid }) });
    this.log = new PluginLog(this.logger);
    stderr?.on('data', (c: Buffer) => this.log.push(c));
    const trace = opts.trace;
    this.input = new BatchedInput(
      toPlugin,
      () => this.broken(`plugin ${spec.name} does not read its input: over ${MAX_UNREAD_INPUT_BYTES} bytes wait unread`),
      // The call being sent is already counted.
      () => this.rpc.outstanding <= 1,
    );
    const send = this.input.write;
    const traced = (frame: string, msg: object): void => {
      trace?.('send', msg);
      send(frame);
    };
    // A dead plugin's stdin raises EPIPE: the writer reports it here, the end handler the death.
    const writer = new FrameWriter(toPlugin, maxMessageBytes, trace ? traced : send, { error: () => this.stdioClosed('stdin') });
    this.rpc = new HostRpc(writer, {
      notification: (method, params) => this.relay(method, params),
      fatal: (err) => this.broken(err.message),
      note: (message, fields) => this.logger.debug(fields, message),
    });
    new FrameReader(fromPlugin, maxMessageBytes).listen({
      message: (msg) => {
        trace?.('receive', msg);
        // A stream listener must not throw, whatever a message does to the code it reaches.
        try {
          this.rpc.receive(msg);
        } catch (err) {
          this.broken(`plugin ${spec.name}: a message it sent could not be handled: ${(err as Error).message}`);
        }
      },
      error: (err) => {
        if (err instanceof FramingError && err.stray !== undefined) {
          this.broken(`plugin ${spec.name} wrote ${err.stray} on ${outputName}, which carries only Content-Length framed JSON-RPC (logs go to stderr)`, err.firstBytes);
        } else if (err instanceof FramingError) {
          this.broken(`plugin ${spec.name} broke the protocol on ${outputName}: ${err.message}`, err.firstBytes);
        } else if (pid !== undefined) {
          this.broken(`plugin ${spec.name} broke the protocol on ${outputName}: ${err.message}`);
        }
        // A socket's own error (a reset, a TLS alert) ends the connection: the end handler reports it.
      },
      close: () => this.stdioClosed('stdout'),
    });
    this.exited = conduit
      .ended({
        plugin: spec.name,
        // The last line may have no newline (a crash message, a flood): it ends with the process, and is in the tail.
        stderrTail: () => {
          this.log.flush();
          return this.log.lastLines();
        },
        when: () => (this.info_ ? undefined : 'before answering initialize'),
      })
      .then(({ code, signal, error }) => {
        this.exitSeen = true;
        clearTimeout(this.stdioTimer);
        this.log.flush();
        this.fail(error);
        conduit.release();
        return { code, signal };
      });
  }

  /** The process, when the host spawned it; undefined for a plugin it connected to. */
  get processId(): number | undefined {
    return this.conduit.pid;
  }

  /**
   * The spawned process. A connected plugin has none here, and asking is a mistake that must not become a
   * signal to a made-up pid (0 would be the host's own process group): it throws.
   */
  get pid(): number {
    if (this.conduit.pid === undefined) throw new Error(`plugin ${this.spec.name} at ${this.conduit.where} is connected to, not a process of this host`);
    return this.conduit.pid;
  }

  /** Where the plugin is: `pid 123`, or the address connected to. */
  get where(): string {
    return this.conduit.where;
  }

  static async start(spec: PluginSpec, opts: ClientOptions): Promise<PluginClient> {
    let conduit: Conduit;
    // What was run, unless it was checked against a pin before: looked at if it dies before answering.
    let unchecked: string | undefined;
    // When the start's deadline began: a connection's time counts against it, so that a peer slow to take it and then
    // silent cannot make one attempt last twice startTimeoutMs. A spawned plugin's starts at its handshake, after the
    // pin check (hashing a large binary is the host's time, not the plugin's).
    let began: number | undefined;
    if (spec.connect !== undefined) {
      began = Date.now();
      conduit = await connectConduit({ plugin: spec.name, address: spec.connect, tls: spec.tls, timeoutMs: spec.startTimeoutMs });
    } else {
      const hostEnv = opts.hostEnv ?? process.env;
      const env = pluginEnvironment(hostEnv, spec.envPassthrough, spec.env, {
        HVPLUG_MAX_MESSAGE_BYTES: String(opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES),
      });
      // The spec's own rules: a spec without connect has a command.
      const command = spec.command as string;
      const resolved = await resolveExecutable(command, env.PATH, `plugin ${spec.name}`);
      // Loaded with the first pinned plugin: it brings node:crypto and node's streams.
      const executable = spec.sha256
        ? await (await import('./integrity.js')).verifyPin(resolved, spec.sha256, { pathEnv: env.PATH, runtimeDir: opts.runtimeDir })
        : resolved;
      if (!spec.sha256) unchecked = resolved;
      conduit = await spawnConduit({ executable, args: spec.args, env, plugin: spec.name });
    }
    const client = new PluginClient(spec, conduit, opts);
    try {
      await client.handshake(opts, began ?? Date.now());
    } catch (err) {
      // A listening plugin turns a host away by answering its initialize with the reason (another host is
      // served, the certificate was refused): for this host the plugin is out of reach, and says why.
      const refused = conduit.pid === undefined && err instanceof HvplugError && (err.code === 'ResourceExhausted' || err.code === 'InvalidRequest');
      const reported = refused ? new PluginUnreachableError(spec.name, conduit.where, err.message) : await explained(err, unchecked);
      // At once: the caller's deadline is the handshake's, and the end handler reaps what is left.
      client.fail(reported instanceof HvplugError ? reported : new ProtocolError(String(reported)));
      client.kill('SIGKILL');
      throw reported;
    }
    return client;
  }

  get info(): InitializeResult {
    if (!this.info_) throw new Error('handshake not done');
    return this.info_;
  }

  get alive(): boolean {
    return this.fatal === undefined;
  }

  /** Why the plugin is unusable, if it is. */
  get failure(): HvplugError | undefined {
    return this.fatal;
  }

  /** Calls the host has sent and not yet seen end (nothing is kept of a call once it has ended). */
  get outstanding(): number {
    return this.rpc.outstanding;
  }

  private relay(method: string, params: unknown): void {
    if (this.fatal) return;
    if (!this.budget.take()) {
      this.broken(`plugin ${this.spec.name} sent notifications faster than ${NOTIFICATION_RATE}/s (bursts up to ${NOTIFICATION_BURST})`);
      return;
    }
    for (const l of this.listeners) {
      try {
        l(method, params, this.origin);
      } catch (err) {
        this.logger.error({ err, method }, 'a notification listener failed');
      }
    }
  }

  onNotification(listener: NotificationListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async handshake(opts: ClientOptions, began: number): Promise<void> {
    const offered = [...(opts.protocolVersions ?? PROTOCOL_VERSIONS)];
    const params: InitializeParams = {
      protocolVersions: offered,
      host: { name: 'hvplug', version: opts.hostVersion },
      stateDir: opts.stateDir,
      runtimeDir: opts.runtimeDir,
      logLevel: opts.logLevel,
    };
    const timeoutMs = this.spec.startTimeoutMs;
    const handshake = sessionMethod('handshake');
    const left = Math.max(1, began + timeoutMs - Date.now());
    const raw = await this.call(handshake, params, { timeoutMs: left }).catch((err: unknown) => {
      if (!(err instanceof TimeoutError)) throw err;
      // A process is named by the plugin; a peer on the network by where it was, or a stalled start has nothing to go on.
      const who = this.conduit.pid === undefined ? `${this.spec.name} at ${this.conduit.where}` : this.spec.name;
      throw new TimeoutError(handshake, timeoutMs, `plugin ${who} did not answer ${handshake} within ${timeoutMs / 1000} s`);
    });
    const parsed = InitializeResult.safeParse(raw);
    if (!parsed.success) throw new ProtocolViolationError(handshake, toIssues(parsed.error));
    const chosen = parsed.data.protocolVersion;
    // Within a major, a newer version only adds: the plugin may pick one the host speaks, never a newer one.
    if (!offered.some((v) => sameMajor(v, chosen) && compareVersions(chosen, v) <= 0)) throw new ProtocolVersionError(offered, [chosen]);
    // What the plugin advertises of a version after the one it chose is not part of this session (the gate
    // refuses it, saying why): the capabilities the host keeps are the session's.
    const later = parsed.data.capabilities.methods.filter((m) => isMethodName(m) && !inProtocol(m, chosen));
    if (later.length > 0) {
      this.logger.warn({ protocolVersion: chosen, methods: later }, 'plugin advertises methods of a later protocol version than it chose; they are not called');
      parsed.data.capabilities.methods = parsed.data.capabilities.methods.filter((m) => !later.includes(m));
    }
    this.info_ = parsed.data;
    this.rpc.notify('initialized', {});
  }

  /** Sends one request. Rejects with a typed error at once on deadline, abort, crash or protocol error. */
  call(method: string, params: unknown, opts: CallOptions): Promise<unknown> {
    if (this.fatal) return Promise.reject(this.fatal);
    return this.rpc.call(method, params, opts);
  }

  notify(method: string, params: unknown): void {
    if (this.fatal) return;
    this.rpc.notify(method, params);
  }

  private fail(err: HvplugError): void {
    const first = this.fatal === undefined;
    this.fatal ??= err;
    this.rpc.failAll(this.fatal);
    if (!first) return;
    for (const l of this.failureListeners) {
      try {
        l(this.fatal);
      } catch (e) {
        this.logger.error({ err: e }, 'a failure listener failed');
      }
    }
  }

  /** The plugin broke the protocol: it is failed now and killed, and its exit is reaped as any other. */
  private broken(message: string, firstBytes?: string): void {
    this.fail(new ProtocolError(message, firstBytes));
    this.kill('SIGKILL');
  }

  /** A pipe closed: normal on the way out, broken if the plugin lives on without it. */
  private stdioClosed(which: 'stdout' | 'stdin'): void {
    // A connection's end is its close, which the end handler reports.
    if (this.conduit.pid === undefined) return;
    if (this.exitSeen || this.stdioTimer || this.fatal) return;
    this.stdioTimer = setTimeout(() => {
      if (!this.exitSeen) this.broken(`plugin ${this.spec.name} closed its ${which} but kept running`);
    }, STDIO_CLOSE_GRACE_MS).unref();
  }

  /**
   * Told synchronously, the moment the client becomes unusable (crash, protocol error, shutdown): a
   * supervisor must stop routing calls here at once, not when the process is finally reaped.
   */
  onFailure(listener: (err: HvplugError) => void): void {
    this.failureListeners.add(listener);
  }

  /**
   * Signals the plugin's whole process group (VMMs run in sessions of their own, so they are spared); a
   * connected plugin's connection is cut instead, and the plugin lives on.
   */
  kill(signal: NodeJS.Signals, reason?: string): void {
    this.conduit.kill(signal, reason);
  }

  /** shutdown → exit → stdin EOF, then SIGTERM, then SIGKILL of the process group (a connection: cut). */
  async close(opts: { graceMs?: number } = {}): Promise<ExitInfo> {
    const grace = opts.graceMs ?? 2_000;
    if (!this.fatal) {
      await this.call(sessionMethod('goodbye'), {}, { timeoutMs: grace }).catch(() => undefined);
      this.notify('exit', {});
      this.fail(new HvplugError(`plugin ${this.spec.name} is shutting down`, 'PluginExited'));
    }
    this.input.end();
    const waitExit = (ms: number): Promise<boolean> =>
      Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
    if (!(await waitExit(grace))) {
      this.logger.warn('plugin did not exit after shutdown; sending SIGTERM');
      this.kill('SIGTERM');
      if (!(await waitExit(grace))) {
        this.logger.warn('plugin ignored SIGTERM; sending SIGKILL');
        this.kill('SIGKILL');
      }
    }
    return this.exited;
  }
}

/**
 * A plugin process dead before answering initialize, with what its launcher's files tell of why (a startup snapshot
 * cut short kills node without a word): the error as it was otherwise. Loaded on that path only, as for pins.
 */
async function explained(err: unknown, executable: string | undefined): Promise<unknown> {
  if (!(err instanceof PluginExitedError) || err.when === undefined || executable === undefined) return err;
  const damage = await (await import('./integrity.js')).launcherDamage(executable).catch(() => undefined);
  return damage === undefined ? err : new PluginExitedError(err.plugin, err.exitCode, err.signal, err.stderrTail, new Error(damage), err.when);
}
