import { AsyncLocalStorage } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { sessionMethod, type InitializeResult } from 'hvplug/protocol';
import type { ChannelCallOptions, NotificationListener, PluginChannel } from '../shim/channel.js';
import { HvplugError, PluginExitedError, TimeoutError } from '../errors/index.js';
import { PluginClient, type ClientOptions } from './plugin-client.js';
import type { PluginSpec } from './plugin-spec.js';

export interface SupervisionOptions {
  /** First restart delay; doubles per consecutive crash up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** More than this many crashes within crashWindowMs marks the plugin failed. */
  maxRestarts?: number;
  crashWindowMs?: number;
  /** health/ping period; 0 turns health checks off. */
  healthIntervalMs?: number;
  healthTimeoutMs?: number;
}

export const DEFAULT_SUPERVISION: Required<SupervisionOptions> = {
  backoffMs: 100,
  maxBackoffMs: 5_000,
  maxRestarts: 5,
  crashWindowMs: 60_000,
  healthIntervalMs: 5_000,
  healthTimeoutMs: 2_000,
};

/** The plugin crashed too often; calls fail fast with the reason and its last stderr lines. */
export class PluginFailedError extends HvplugError {
  constructor(readonly plugin: string, readonly lastExit: PluginExitedError | undefined, restarts: number) {
    super(
      `plugin ${plugin} failed: ${restarts} crashes within the crash-loop window${lastExit ? `; last: ${lastExit.message}` : ''}`,
      'PluginFailed',
    );
  }
}

export interface SupervisorEvents {
  /** pid: the process, undefined for a plugin connected to (see PluginSpec.connect), as in every event here. */
  started: [{ pid: number | undefined; restart: number }];
  /** Every end of a process: its own exit, a crash, or a kill for breaking the protocol or missing pings. */
  exited: [{ pid: number | undefined; code: number | null; signal: string | null; error: HvplugError }];
  unhealthy: [{ pid: number | undefined; reason: string }];
  failed: [PluginFailedError];
  /** After a restart, before calls resume: the owner re-attaches VMs here. */
  restarted: [{ pid: number | undefined; restart: number }];
}

/**
 * One plugin process kept alive: restarted with backoff when it dies or stops answering health pings,
 * up to a crash-loop limit. It is the shim's channel, so the shim never sees the process change.
 */
export class SupervisedPlugin extends EventEmitter<SupervisorEvents> implements PluginChannel {
  private client: PluginClient | undefined;
  /** A process in its handshake, not yet the client. */
  private starting: Promise<PluginClient> | undefined;
  private ready: Promise<PluginClient>;
  private readonly notificationListeners = new Set<NotificationListener>();
  private readonly crashes: number[] = [];
  private restarts = 0;
  private failed: PluginFailedError | undefined;
  private closing = false;
  private healthTimer: NodeJS.Timeout | undefined;
  private readonly opts: Required<SupervisionOptions>;
  /** Runs after a restart, before queued calls go through (re-attaching VMs). */
  reattach: (() => Promise<void>) | undefined;
  /**
   * Whether calls go straight to the current process. Not before a new process has re-attached its VMs:
   * calls made meanwhile (from a plugin-started listener, say) would find none of them.
   */
  private routable = false;
  /** The calls of a re-attach itself go to the new process at once (anything else waits for the re-attach). */
  private readonly reattaching = new AsyncLocalStorage<PluginClient>();

  private constructor(
    readonly spec: PluginSpec,
    private readonly clientOpts: ClientOptions,
    opts: SupervisionOptions,
  ) {
    super();
    this.opts = { ...DEFAULT_SUPERVISION, ...opts };
    this.ready = Promise.reject(new Error('not started'));
    this.ready.catch(() => undefined);
  }

  /** `wire` sees the supervisor before its first process starts, so that its listeners hear that start too. */
  static async start(
    spec: PluginSpec,
    clientOpts: ClientOptions,
    opts: SupervisionOptions = {},
    wire?: (proc: SupervisedPlugin) => void,
  ): Promise<SupervisedPlugin> {
    const s = new SupervisedPlugin(spec, clientOpts, opts);
    wire?.(s);
    s.ready = s.spawn().then((client) => {
      s.routable = true;
      return client;
    });
    await s.ready;
    return s;
  }

  get info(): InitializeResult {
    if (!this.client) throw new Error(`plugin ${this.spec.name} is not running`);
    return this.client.info;
  }

  get pid(): number | undefined {
    return this.client?.pid;
  }

  get state(): 'running' | 'restarting' | 'failed' | 'closed' {
    if (this.closing) return 'closed';
    if (this.failed) return 'failed';
    return this.client?.alive ? 'running' : 'restarting';
  }

  onNotification(listener: NotificationListener): () => void {
    this.notificationListeners.add(listener);
    return () => this.notificationListeners.delete(listener);
  }

  private async spawn(): Promise<PluginClient> {
    const starting = PluginClient.start(this.spec, this.clientOpts);
    this.starting = starting;
    const client = await starting.finally(() => {
      if (this.starting === starting) this.starting = undefined;
    });
    if (this.closing) {
      // close() came while this process was in its handshake: it goes too.
      await client.close();
      throw new HvplugError(`plugin ${this.spec.name} is closed`, 'PluginExited');
    }
    this.client = client;
    client.onNotification((m, p) => {
      for (const l of this.notificationListeners) l(m, p, client.origin);
    });
    client.onFailure(() => this.onExit(client));
    this.emit('started', { pid: client.processId, restart: this.restarts });
    this.scheduleHealth(client);
    return client;
  }

  /** Calls wait for a restart in progress (their own deadline still applies); a failed plugin fails fast. */
  call(method: string, params: unknown, opts: ChannelCallOptions): Promise<unknown> {
    if (this.failed) return Promise.reject(this.failed);
    // Not async: handing back the client's own promise spares every call two promise hops.
    if (this.routable && this.client?.alive) return this.client.call(method, params, opts);
    const reattaching = this.reattaching.getStore();
    if (reattaching?.alive) return reattaching.call(method, params, opts);
    return this.waitReady(method, opts).then((client) => client.call(method, params, opts));
  }

  private waitReady(method: string, opts: ChannelCallOptions): Promise<PluginClient> {
    if (opts.timeoutMs === null) return this.ready;
    const ms = opts.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      this.ready,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TimeoutError(method, ms)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  private onExit(client: PluginClient): void {
    if (client !== this.client || this.closing) return;
    this.routable = false;
    clearTimeout(this.healthTimer);
    // A protocol error leaves the process running until it is reaped: make sure it goes.
    client.kill('SIGKILL');
    void client.exited.then(({ code, signal }) => {
      const error = client.failure ?? new PluginExitedError(this.spec.name, code, signal, []);
      this.emit('exited', { pid: client.processId, code, signal, error });
    });
    const now = Date.now();
    this.crashes.push(now);
    while (this.crashes.length && (this.crashes[0] as number) < now - this.opts.crashWindowMs) this.crashes.shift();
    if (this.crashes.length > this.opts.maxRestarts) {
      const lastExit = client.failure instanceof PluginExitedError ? client.failure : undefined;
      this.failed = new PluginFailedError(this.spec.name, lastExit, this.crashes.length);
      this.ready = Promise.reject(this.failed);
      this.ready.catch(() => undefined);
      this.emit('failed', this.failed);
      return;
    }
    this.ready = client.exited.then(() => this.restart());
    this.ready.catch(() => undefined);
  }

  private async restart(): Promise<PluginClient> {
    for (;;) {
      const attempt = this.crashes.length;
      const delay = Math.min(this.opts.backoffMs * 2 ** Math.max(0, attempt - 1), this.opts.maxBackoffMs);
      await new Promise((r) => setTimeout(r, delay));
      if (this.closing) throw new HvplugError(`plugin ${this.spec.name} is closed`, 'PluginExited');
      try {
        this.restarts++;
        const client = await this.spawn();
        await this.reattaching.run(client, async () => this.reattach?.());
        this.routable = true;
        this.emit('restarted', { pid: client.processId, restart: this.restarts });
        return client;
      } catch (err) {
        this.crashes.push(Date.now());
        if (this.crashes.length > this.opts.maxRestarts) {
          this.failed = new PluginFailedError(this.spec.name, err instanceof PluginExitedError ? err : undefined, this.crashes.length);
          this.emit('failed', this.failed);
          throw this.failed;
        }
      }
    }
  }

  private scheduleHealth(client: PluginClient): void {
    if (this.opts.healthIntervalMs <= 0) return;
    clearTimeout(this.healthTimer);
    this.healthTimer = setTimeout(() => {
      if (client !== this.client || !client.alive || this.closing) return;
      client.call(sessionMethod('ping'), {}, { timeoutMs: this.opts.healthTimeoutMs }).then(
        () => this.scheduleHealth(client),
        (err: Error) => {
          if (client !== this.client || this.closing || !client.alive) return;
          // A plugin that stops answering is treated like a dead one: SIGKILL, then the exit path restarts it.
          this.emit('unhealthy', { pid: client.processId, reason: err.message });
          client.kill('SIGKILL');
          // A SIGSTOPped process cannot die until continued.
          client.kill('SIGCONT');
        },
      );
    }, this.opts.healthIntervalMs);
    this.healthTimer.unref();
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.healthTimer);
    // A process still in its handshake is closed by spawn() when it comes up; wait for that too.
    await Promise.all([this.client?.close(), this.starting?.then((c) => c.exited).catch(() => undefined)]);
  }

  /** The current process, for tests and diagnostics. */
  current(): PluginClient | undefined {
    return this.client;
  }
}
