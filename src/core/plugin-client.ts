import type { Logger } from 'pino';
import { execa, type ResultPromise } from 'execa';
import type { Readable, Writable } from 'node:stream';
import {
  createMessageConnection,
  ResponseError,
  Message,
  type CancellationToken,
  type DataCallback,
  type Disposable,
  type MessageConnection,
  type MessageReader,
} from 'vscode-jsonrpc/node';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  FramedReader,
  FramedWriter,
  FramingError,
  InitializeResult,
  PROTOCOL_VERSIONS,
  sameMajor,
  tapReader,
  toIssues,
  type InitializeParams,
} from 'hvplug/protocol';
import { pluginEnvironment } from './environment.js';
import {
  CancelledError,
  fromWireError,
  HvplugError,
  PluginExitedError,
  PluginSpawnError,
  ProtocolError,
  ProtocolVersionError,
  ProtocolViolationError,
  TimeoutError,
} from './errors.js';
import { resolveExecutable, verifyPin } from './integrity.js';
import { PluginLog } from './plugin-log.js';
import type { PluginSpec } from './plugin-spec.js';

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

export interface CallOptions {
  /** null: no deadline (the call may still be aborted). */
  timeoutMs: number | null;
  signal?: AbortSignal;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

type NotificationListener = (method: string, params: unknown) => void;

type Tracer = NonNullable<ClientOptions['trace']>;

class TracedReader extends FramedReader {
  constructor(readable: Readable, maxMessageBytes: number, private readonly tracer: Tracer) {
    super(readable, maxMessageBytes);
  }

  override listen(callback: DataCallback): Disposable {
    return super.listen((msg) => {
      this.tracer('receive', msg);
      callback(msg);
    });
  }
}

class TracedWriter extends FramedWriter {
  constructor(writable: Writable, maxMessageBytes: number, writeFrame: (frame: string) => void, private readonly tracer: Tracer) {
    super(writable, maxMessageBytes, writeFrame);
  }

  override write(msg: Message): Promise<void> {
    this.tracer('send', msg);
    return super.write(msg);
  }
}

/**
 * Hands notifications to `relay` as they are read, so they keep their wire order with the responses around them
 * (which vscode-jsonrpc resolves as they are read once maxParallelism is set, see start). Left to vscode-jsonrpc,
 * every message waits in its queue for a setImmediate of its own: one message per event-loop turn.
 */
function relayNotifications(inner: MessageReader, relay: NotificationListener): MessageReader {
  return tapReader(inner, (msg) => {
    if (!Message.isNotification(msg)) return true;
    relay(msg.method, msg.params);
    return false;
  });
}

/**
 * The plugin's stdin. Frames written in the same tick leave joined, in one write at its end: under load, a
 * wake-up of the plugin then brings it many requests instead of one.
 */
/** A batch leaves early once this big: host and plugin then work at the same time instead of in turns. */
const MAX_BATCH_CHARS = 4 * 1024;

class BatchedInput {
  private batch = '';

  constructor(private readonly stream: Writable) {}

  readonly write = (frame: string): void => {
    if (this.batch === '') process.nextTick(this.flush);
    this.batch += frame;
    if (this.batch.length >= MAX_BATCH_CHARS) this.flush();
  };

  private readonly flush = (): void => {
    if (this.batch === '') return;
    const frames = this.batch;
    this.batch = '';
    this.stream.write(frames);
  };

  /** EOF after what is still waiting for the end of the tick (the `exit` notification, say). */
  end(): void {
    this.flush();
    this.stream.end();
  }
}

/**
 * One outstanding call in one object: the cancellation token vscode-jsonrpc watches (it sends $/cancelRequest
 * when it fires), the deadline, the abort listener (handleEvent) and how the call ends. A
 * CancellationTokenSource, a setTimeout and a closure for each of these per call cost a fifth of the host's
 * time per call under load.
 */
class OutgoingCall implements CancellationToken {
  isCancellationRequested = false;
  /** performance.now() time at which expire runs. */
  deadline = 0;
  private listener: ((e: undefined) => unknown) | undefined;
  private ended = false;

  constructor(
    private readonly client: { end(call: OutgoingCall): void },
    readonly method: string,
    readonly timeoutMs: number | null,
    readonly signal: AbortSignal | undefined,
    private readonly resolve: (value: unknown) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  onCancellationRequested(listener: (e: undefined) => unknown): Disposable {
    this.listener = listener;
    return this;
  }

  cancel(): void {
    if (this.isCancellationRequested) return;
    this.isCancellationRequested = true;
    this.listener?.(undefined);
  }

  dispose(): void {
    this.listener = undefined;
  }

  get done(): boolean {
    return this.ended;
  }

  succeed(value: unknown): void {
    if (this.finish()) this.resolve(value);
  }

  fail(err: Error): void {
    if (this.finish()) this.reject(err);
  }

  /** The deadline passed. */
  expire(): void {
    this.cancel();
    this.fail(new TimeoutError(this.method, this.timeoutMs ?? 0));
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    this.cancel();
    this.fail(new CancelledError(this.method, this.signal?.reason));
  }

  private finish(): boolean {
    if (this.ended) return false;
    this.ended = true;
    this.client.end(this);
    this.signal?.removeEventListener('abort', this);
    this.dispose();
    return true;
  }
}

/**
 * The deadlines of a client's outstanding calls, under one timer armed for the earliest. Calls with the same
 * timeout expire in the order they were made, so each timeout keeps its calls in a Set (insertion-ordered, O(1)
 * removal) and only the first of each is looked at.
 */
class Deadlines {
  private readonly byTimeout = new Map<number, Set<OutgoingCall>>();
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;

  add(call: OutgoingCall, timeoutMs: number): void {
    call.deadline = performance.now() + timeoutMs;
    let calls = this.byTimeout.get(timeoutMs);
    if (!calls) this.byTimeout.set(timeoutMs, (calls = new Set()));
    calls.add(call);
    if (call.deadline < this.armedFor) this.arm(call.deadline);
  }

  delete(call: OutgoingCall, timeoutMs: number): void {
    // The timer stays armed: disarming and re-arming it around every call of a one-at-a-time caller costs more
    // than the one spurious wake-up per deadline period it saves.
    this.byTimeout.get(timeoutMs)?.delete(call);
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.armedFor = at;
    // Unref'd: an outstanding call keeps the process alive through the plugin's stdout anyway.
    this.timer = setTimeout(this.fire, Math.max(0, Math.ceil(at - performance.now()))).unref();
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = performance.now();
    const expired: OutgoingCall[] = [];
    let next = Infinity;
    for (const calls of this.byTimeout.values()) {
      for (const call of calls) {
        if (call.deadline > now) {
          next = Math.min(next, call.deadline);
          break;
        }
        expired.push(call);
      }
    }
    // expire() removes the call (through delete), so it runs after the walk.
    for (const call of expired) call.expire();
    if (next < Infinity) this.arm(next);
  };
}

/** vscode-jsonrpc's code when the writer refused a message (e.g. over the size cap). */
const MESSAGE_WRITE_ERROR = -32099;

/**
 * One running plugin process: spawn, handshake, calls with deadlines and cancellation, crash and
 * protocol-error detection, graceful-then-forced shutdown. Knows nothing of VMs.
 */
export class PluginClient {
  private readonly pending = new Set<OutgoingCall>();
  private readonly deadlines = new Deadlines();
  private fatal: HvplugError | undefined;
  private readonly failureListeners = new Set<(err: HvplugError) => void>();
  private info_: InitializeResult | undefined;
  readonly exited: Promise<ExitInfo>;

  private constructor(
    readonly spec: PluginSpec,
    private readonly child: ResultPromise,
    private readonly connection: MessageConnection,
    private readonly log: PluginLog,
    readonly pid: number,
    private readonly logger: Logger,
    private readonly listeners: Set<NotificationListener>,
    private readonly input: BatchedInput,
  ) {
    this.exited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        // stderr may still hold the crash message: give it a moment to drain, but no more.
        const drained = new Promise<void>((r) => {
          if (child.stderr?.readableEnded) r();
          else child.stderr?.once('end', () => r());
        });
        void Promise.race([drained, new Promise((r) => setTimeout(r, 100))]).then(() => {
          log.flush();
          this.failAll(new PluginExitedError(spec.name, code, signal, log.lastLines()));
          connection.dispose();
          resolve({ code, signal });
        });
      });
    });
    connection.onError(([err]) => {
      const first = err instanceof FramingError ? err.firstBytes : undefined;
      this.failAll(new ProtocolError(`plugin ${spec.name} broke the protocol on stdout: ${err.message}`, first));
      this.kill('SIGKILL');
    });
  }

  static async start(spec: PluginSpec, opts: ClientOptions): Promise<PluginClient> {
    const hostEnv = opts.hostEnv ?? process.env;
    const maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const env = pluginEnvironment(hostEnv, spec.envPassthrough, spec.env, {
      HVPLUG_MAX_MESSAGE_BYTES: String(maxMessageBytes),
    });
    const resolved = await resolveExecutable(spec.command, env.PATH);
    const executable = spec.sha256 ? await verifyPin(resolved, spec.sha256, { pathEnv: env.PATH, runtimeDir: opts.runtimeDir }) : resolved;
    let child: ResultPromise;
    try {
      child = execa(executable, spec.args, {
        env,
        extendEnv: false,
        stdin: 'pipe',
        stdout: 'pipe',
        stderr: 'pipe',
        buffer: false,
        encoding: 'buffer',
        // Its own process group, so a forced shutdown can take the plugin and its helpers down together.
        detached: true,
        reject: false,
        cleanup: false,
      });
    } catch (err) {
      throw new PluginSpawnError(`cannot start plugin ${spec.name}: ${(err as Error).message}`, { cause: err });
    }
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid as number));
      child.once('error', (err) => reject(new PluginSpawnError(`cannot start plugin ${spec.name}: ${err.message}`, { cause: err })));
    });
    const logger = opts.logger.child({ plugin: spec.name, pid });
    const log = new PluginLog(logger);
    child.stderr?.on('data', (c: Buffer) => log.push(c));
    // A dead plugin's stdin raises EPIPE; the exit handler reports the death.
    child.stdin?.on('error', () => undefined);
    const stdout = child.stdout;
    const stdin = child.stdin;
    if (!stdout || !stdin) throw new PluginSpawnError(`plugin ${spec.name} has no stdio pipes`);
    const listeners = new Set<NotificationListener>();
    const reader = relayNotifications(
      opts.trace ? new TracedReader(stdout, maxMessageBytes, opts.trace) : new FramedReader(stdout, maxMessageBytes),
      (method, params) => {
        for (const l of listeners) {
          try {
            l(method, params);
          } catch (err) {
            logger.error({ err, method }, 'a notification listener failed');
          }
        }
      },
    );
    const input = new BatchedInput(stdin);
    const writer = opts.trace
      ? new TracedWriter(stdin, maxMessageBytes, input.write, opts.trace)
      : new FramedWriter(stdin, maxMessageBytes, input.write);
    // Set, maxParallelism makes vscode-jsonrpc resolve responses as they are read instead of queueing them; the
    // plugin sends the host no requests, so the limit itself never applies.
    const connection = createMessageConnection(reader, writer, undefined, { maxParallelism: Number.MAX_SAFE_INTEGER });
    connection.listen();
    const client = new PluginClient(spec, child, connection, log, pid, logger, listeners, input);
    try {
      await client.handshake(opts);
    } catch (err) {
      await client.close({ graceMs: 500 });
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
    const raw = await this.call('initialize', params, { timeoutMs: 10_000 });
    const parsed = InitializeResult.safeParse(raw);
    if (!parsed.success) throw new ProtocolViolationError('initialize', toIssues(parsed.error));
    const chosen = parsed.data.protocolVersion;
    if (!offered.some((v) => sameMajor(v, chosen))) throw new ProtocolVersionError(offered, [chosen]);
    this.info_ = parsed.data;
    await this.connection.sendNotification('initialized', {});
  }

  /** Sends one request. Rejects with a typed error at once on deadline, abort, crash or protocol error. */
  call(method: string, params: unknown, opts: CallOptions): Promise<unknown> {
    if (this.fatal) return Promise.reject(this.fatal);
    const { signal, timeoutMs } = opts;
    let call!: OutgoingCall;
    const promise = new Promise<unknown>((resolve, reject) => {
      call = new OutgoingCall(this.ending, method, timeoutMs, signal, resolve, reject);
    });
    if (signal?.aborted) {
      call.fail(new CancelledError(method, signal.reason));
      return promise;
    }
    this.pending.add(call);
    if (timeoutMs !== null) this.deadlines.add(call, timeoutMs);
    signal?.addEventListener('abort', call, { once: true });
    this.connection.sendRequest(method, params, call).then(
      (result) => call.succeed(result),
      (err: unknown) => {
        if (!call.done) call.fail(this.toError(method, err));
      },
    );
    return promise;
  }

  /** What the client forgets of a call once it has ended, however it ended. */
  private readonly ending = {
    end: (call: OutgoingCall): void => {
      this.pending.delete(call);
      if (call.timeoutMs !== null) this.deadlines.delete(call, call.timeoutMs);
    },
  };

  private toError(method: string, err: unknown): Error {
    if (err instanceof ResponseError) {
      if (err.code === MESSAGE_WRITE_ERROR) return new ProtocolError(`${method}: the message was not sent: ${err.message}`);
      return fromWireError(method, err.code, err.message, err.data);
    }
    return this.fatal ?? (err instanceof Error ? err : new Error(String(err)));
  }

  notify(method: string, params: unknown): void {
    if (this.fatal) return;
    void this.connection.sendNotification(method, params).catch(() => undefined);
  }

  private failAll(err: HvplugError): void {
    const first = this.fatal === undefined;
    this.fatal ??= err;
    for (const call of [...this.pending]) call.fail(this.fatal);
    if (first) for (const l of this.failureListeners) l(this.fatal);
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
      await this.call('shutdown', {}, { timeoutMs: grace }).catch(() => undefined);
      this.notify('exit', {});
      this.failAll(new HvplugError(`plugin ${this.spec.name} is shutting down`, 'PluginExited'));
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
