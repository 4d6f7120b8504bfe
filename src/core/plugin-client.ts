import type { Logger } from 'pino';
import { execa, type ResultPromise } from 'execa';
import { CancellationTokenSource, createMessageConnection, ResponseError, type MessageConnection } from 'vscode-jsonrpc/node';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  FramedReader,
  FramedWriter,
  FramingError,
  InitializeResult,
  PROTOCOL_VERSIONS,
  sameMajor,
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

/** vscode-jsonrpc's code when the writer refused a message (e.g. over the size cap). */
const MESSAGE_WRITE_ERROR = -32099;

/**
 * One running plugin process: spawn, handshake, calls with deadlines and cancellation, crash and
 * protocol-error detection, graceful-then-forced shutdown. Knows nothing of VMs.
 */
export class PluginClient {
  private readonly pending = new Set<(err: Error) => void>();
  private readonly listeners = new Set<NotificationListener>();
  private fatal: HvplugError | undefined;
  private info_: InitializeResult | undefined;
  readonly exited: Promise<ExitInfo>;

  private constructor(
    readonly spec: PluginSpec,
    private readonly child: ResultPromise,
    private readonly connection: MessageConnection,
    private readonly log: PluginLog,
    readonly pid: number,
    private readonly logger: Logger,
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
    connection.onNotification((method: string, params: unknown) => {
      for (const l of this.listeners) l(method, params);
    });
    // vscode-jsonrpc routes $/progress itself; tokens are ours, so it lands here as unhandled.
    connection.onUnhandledProgress((params) => {
      for (const l of this.listeners) l('$/progress', params);
    });
  }

  static async start(spec: PluginSpec, opts: ClientOptions): Promise<PluginClient> {
    const hostEnv = opts.hostEnv ?? process.env;
    const maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const env = pluginEnvironment(hostEnv, spec.envPassthrough, spec.env, {
      HVPLUG_MAX_MESSAGE_BYTES: String(maxMessageBytes),
    });
    const executable = await resolveExecutable(spec.command, env.PATH);
    if (spec.sha256) await verifyPin(executable, spec.sha256);
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
    const connection = createMessageConnection(new FramedReader(stdout, maxMessageBytes), new FramedWriter(stdin, maxMessageBytes));
    connection.listen();
    const client = new PluginClient(spec, child, connection, log, pid, logger);
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
    return new Promise<unknown>((resolve, reject) => {
      const cts = new CancellationTokenSource();
      let timer: NodeJS.Timeout | undefined;
      const { signal, timeoutMs } = opts;
      const done = (): void => {
        this.pending.delete(fail);
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        cts.dispose();
      };
      const fail = (err: Error): void => {
        done();
        reject(err);
      };
      const onAbort = (): void => {
        cts.cancel();
        fail(new CancelledError(method, signal?.reason));
      };
      if (signal?.aborted) {
        fail(new CancelledError(method, signal.reason));
        return;
      }
      this.pending.add(fail);
      if (timeoutMs !== null) {
        timer = setTimeout(() => {
          cts.cancel();
          fail(new TimeoutError(method, timeoutMs));
        }, timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.connection.sendRequest(method, params, cts.token).then(
        (result) => {
          done();
          resolve(result);
        },
        (err: unknown) => {
          if (!this.pending.has(fail)) return;
          done();
          reject(this.toError(method, err));
        },
      );
    });
  }

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
    this.fatal ??= err;
    for (const fail of [...this.pending]) fail(this.fatal);
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
    this.child.stdin?.end();
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
