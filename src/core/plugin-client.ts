import type { Logger } from 'pino';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import {
  compareVersions,
  InitializeResult,
  PROTOCOL_VERSIONS,
  sameMajor,
  sessionMethod,
  toIssues,
  type InitializeParams,
} from 'hvplug/protocol';
import { pluginEnvironment } from './environment.js';
import { HvplugError, PluginExitedError, TimeoutError, PluginSpawnError, ProtocolError, ProtocolVersionError, ProtocolViolationError } from '../errors/index.js';
import { HostRpc, type RpcCallOptions } from './host-rpc.js';
import { resolveExecutable, verifyPin } from './integrity.js';
import { PluginLog } from './plugin-log.js';
import type { NotificationListener } from '../shim/channel.js';
import type { PluginSpec } from './plugin-spec.js';
import type { Wire } from './plugin-wire.js';

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


type PluginProcess = ChildProcessByStdio<Writable, Readable, Readable>;

/** A batch leaves early once this big: host and plugin then work at the same time instead of in turns. */
const MAX_BATCH_CHARS = 4 * 1024;

/**
 * Bytes the host lets wait in a plugin's stdin pipe before it calls the plugin broken. Past it the plugin is not
 * reading what it is sent (or sends requests faster than it reads their answers), and the host's memory would
 * grow with every call.
 */
export const MAX_UNREAD_INPUT_BYTES = 64 * 1024 * 1024;

/**
 * The plugin's stdin. Frames written in the same tick leave joined, in one write at its end: under load, a
 * wake-up of the plugin then brings it many requests instead of one.
 */
class BatchedInput {
  private batch = '';

  constructor(
    private readonly stream: Writable,
    private readonly onOverflow: () => void,
  ) {}

  readonly write = (frame: string): void => {
    if (this.batch === '') process.nextTick(this.flush);
    this.batch += frame;
    if (this.batch.length >= MAX_BATCH_CHARS) this.flush();
  };

  private readonly flush = (): void => {
    if (this.batch === '' || this.stream.destroyed) return;
    const frames = this.batch;
    this.batch = '';
    this.stream.write(frames);
    if (this.stream.writableLength > MAX_UNREAD_INPUT_BYTES) this.onOverflow();
  };

  /** EOF after what is still waiting for the end of the tick (the `exit` notification, say). */
  end(): void {
    this.flush();
    this.stream.end();
  }
}

/**
 * Notifications a plugin may send: NOTIFICATION_BURST at once, NOTIFICATION_RATE per second sustained. Each one
 * costs the host a schema check, listeners and possibly a record write; past the budget the plugin is cut off
 * (ProtocolError, killed, restarted) rather than let it starve the host and every other plugin.
 */
export const NOTIFICATION_RATE = 2_000;
export const NOTIFICATION_BURST = 20_000;

class NotificationBudget {
  private tokens = NOTIFICATION_BURST;
  private last = performance.now();

  take(): boolean {
    if (this.tokens < 1) {
      const now = performance.now();
      this.tokens = Math.min(NOTIFICATION_BURST, this.tokens + ((now - this.last) / 1000) * NOTIFICATION_RATE);
      this.last = now;
      if (this.tokens < 1) return false;
    }
    this.tokens--;
    return true;
  }
}

/**
 * How long a plugin that closed its stdout (or stdin) has to exit before it is called broken and killed: a
 * plugin on its way out closes its pipes a moment before its exit is seen, and its exit code and last stderr
 * lines say more than "closed its stdout".
 */
const STDIO_CLOSE_GRACE_MS = 250;

/**
 * One running plugin process: spawn, handshake, calls with deadlines and cancellation, crash and
 * protocol-error detection, graceful-then-forced shutdown. Knows nothing of VMs.
 */
export class PluginClient {
  private fatal: HvplugError | undefined;
  private readonly failureListeners = new Set<(err: HvplugError) => void>();
  private info_: InitializeResult | undefined;
  private exitSeen = false;
  private stdioTimer: NodeJS.Timeout | undefined;
  readonly exited: Promise<ExitInfo>;

  private readonly rpc: HostRpc;
  private readonly input: BatchedInput;
  private readonly listeners = new Set<NotificationListener>();
  private readonly budget = new NotificationBudget();
  private readonly log: PluginLog;
  private readonly logger: Logger;

  private constructor(
    readonly spec: PluginSpec,
    child: PluginProcess,
    readonly pid: number,
    opts: ClientOptions,
    wire: Wire,
  ) {
    const maxMessageBytes = opts.maxMessageBytes ?? wire.DEFAULT_MAX_MESSAGE_BYTES;
    const { stdin, stdout, stderr } = child;
    this.logger = opts.logger.child({ plugin: spec.name, pid });
    this.log = new PluginLog(this.logger);
    stderr.on('data', (c: Buffer) => this.log.push(c));
    // A dead plugin's stdin raises EPIPE; the writer reports it, the exit handler the death.
    stdin.on('error', () => undefined);
    const reader = wire.reader(stdout, maxMessageBytes, opts.trace);
    this.input = new BatchedInput(stdin, () =>
      this.broken(`plugin ${spec.name} does not read its stdin: over ${MAX_UNREAD_INPUT_BYTES} bytes wait unread`),
    );
    const writer = wire.writer(stdin, maxMessageBytes, this.input.write, opts.trace);
    this.rpc = new HostRpc(writer, {
      notification: (method, params) => this.relay(method, params),
      fatal: (err) => this.broken(err.message),
      note: (message, fields) => this.logger.debug(fields, message),
    });
    reader.onError((err) => {
      if (err instanceof wire.FramingError && err.stray !== undefined) {
        this.broken(`plugin ${spec.name} wrote ${err.stray} on stdout, which carries only Content-Length framed JSON-RPC (logs go to stderr)`, err.firstBytes);
      } else {
        this.broken(`plugin ${spec.name} broke the protocol on stdout: ${err.message}`, err instanceof wire.FramingError ? err.firstBytes : undefined);
      }
    });
    reader.onClose(() => this.stdioClosed('stdout'));
    writer.onError(() => this.stdioClosed('stdin'));
    reader.listen((msg) => {
      // A stream listener must not throw, whatever a message does to the code it reaches.
      try {
        this.rpc.receive(msg);
      } catch (err) {
        this.broken(`plugin ${spec.name}: a message it sent could not be handled: ${(err as Error).message}`);
      }
    });
    this.exited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitSeen = true;
        clearTimeout(this.stdioTimer);
        // The plugin's helpers go with it, whether it was killed or left on its own.
        this.kill('SIGKILL');
        // stderr may still hold the crash message: give it a moment to drain, but no more.
        const drained = new Promise<void>((r) => {
          if (stderr.readableEnded) r();
          else stderr.once('end', () => r());
        });
        void Promise.race([drained, new Promise((r) => setTimeout(r, 100))]).then(() => {
          this.log.flush();
          this.fail(new PluginExitedError(spec.name, code, signal, this.log.lastLines(), undefined, this.info_ ? undefined : 'before answering initialize'));
          // A process that inherited the pipes (a helper in a session of its own) must not keep the host alive.
          for (const s of [stdin, stdout, stderr]) s.destroy();
          resolve({ code, signal });
        });
      });
    });
  }

  static async start(spec: PluginSpec, opts: ClientOptions): Promise<PluginClient> {
    const wire = await import('./plugin-wire.js');
    const hostEnv = opts.hostEnv ?? process.env;
    const env = pluginEnvironment(hostEnv, spec.envPassthrough, spec.env, {
      HVPLUG_MAX_MESSAGE_BYTES: String(opts.maxMessageBytes ?? wire.DEFAULT_MAX_MESSAGE_BYTES),
    });
    const resolved = await resolveExecutable(spec.command, env.PATH, `plugin ${spec.name}`);
    const executable = spec.sha256 ? await verifyPin(resolved, spec.sha256, { pathEnv: env.PATH, runtimeDir: opts.runtimeDir }) : resolved;
    let child: PluginProcess;
    try {
      // node's own spawn: the host needs pipes, a process group and the exit, nothing execa adds to them, and
      // execa's ~100 modules would cost every embedder's process ~14 MiB from its import on.
      child = spawn(executable, spec.args, {
        env,
        stdio: ['pipe', 'pipe', 'pipe'],
        // Its own process group, so a forced shutdown can take the plugin and its helpers down together.
        detached: true,
      });
    } catch (err) {
      throw new PluginSpawnError(`plugin ${spec.name}: cannot start ${executable}: ${(err as Error).message}`, { cause: err });
    }
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid as number));
      child.once('error', (err) => reject(new PluginSpawnError(`plugin ${spec.name}: cannot start ${executable}: ${err.message}`, { cause: err })));
    });
    const client = new PluginClient(spec, child, pid, opts, wire);
    try {
      await client.handshake(opts);
    } catch (err) {
      // At once: the caller's deadline is the handshake's, and the exit handler reaps what is left.
      client.fail(err instanceof HvplugError ? err : new ProtocolError(String(err)));
      client.kill('SIGKILL');
      throw err;
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
        l(method, params, this.pid);
      } catch (err) {
        this.logger.error({ err, method }, 'a notification listener failed');
      }
    }
  }

  onNotification(listener: NotificationListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async handshake(opts: ClientOptions): Promise<void> {
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
    const raw = await this.call(handshake, params, { timeoutMs }).catch((err: unknown) => {
      if (!(err instanceof TimeoutError)) throw err;
      throw new TimeoutError(handshake, timeoutMs, `plugin ${this.spec.name} did not answer ${handshake} within ${timeoutMs / 1000} s`);
    });
    const parsed = InitializeResult.safeParse(raw);
    if (!parsed.success) throw new ProtocolViolationError(handshake, toIssues(parsed.error));
    const chosen = parsed.data.protocolVersion;
    // Within a major, a newer version only adds: the plugin may pick one the host speaks, never a newer one.
    if (!offered.some((v) => sameMajor(v, chosen) && compareVersions(chosen, v) <= 0)) throw new ProtocolVersionError(offered, [chosen]);
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

  /** Signals the plugin's whole process group (VMMs run in sessions of their own, so they are spared). */
  kill(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch {
      // Already gone.
    }
  }

  /** shutdown → exit → stdin EOF, then SIGTERM, then SIGKILL of the process group. */
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
