import { AsyncLocalStorage } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { sessionMethod, type InitializeResult } from 'hvplug/protocol';
import type { ChannelCallOptions, NotificationListener, PluginChannel } from '../shim/channel.js';
import { HvplugError, PluginExitedError, PluginUnreachableError, TimeoutError } from '../errors/index.js';
import { PluginClient, type ClientOptions } from './plugin-client.js';
import { MAX_LOST_AFTER_MS, type PluginSpec } from './plugin-spec.js';

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
  /**
   * A plugin connected to (PluginSpec.connect) that has been unreachable this long has its VMs reported lost
   * (`vm-lost`, status and record); before, they are only out of reach. 0: never. A reconnect recovers them. A
   * plugin's own PluginSpec.unreachableLostAfterMs wins over the host's.
   */
  unreachableLostAfterMs?: number;
}

export const DEFAULT_SUPERVISION: Required<SupervisionOptions> = {
  backoffMs: 100,
  maxBackoffMs: 5_000,
  maxRestarts: 5,
  crashWindowMs: 60_000,
  healthIntervalMs: 5_000,
  healthTimeoutMs: 2_000,
  unreachableLostAfterMs: 300_000,
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

export interface SupervisedStatus {
  state: SupervisedPlugin['state'];
  /** The process, when the host spawned it. */
  pid: number | undefined;
  /** Where it is, when the host connects to it. */
  address: string | undefined;
  restarts: number;
  reconnects: number;
  /** While out of reach: since when, the latest reason, the reconnect attempts so far. */
  unreachable?: { since: string; reason: string; attempts: number };
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
  /** A plugin connected to lost its connection (once per outage; reconnect attempts go on). */
  unreachable: [{ address: string; reason: string; since: string }];
  /** Reconnected and re-attached, after `downMs` unreachable and `attempts` connection attempts. */
  reconnected: [{ address: string; downMs: number; attempts: number }];
  /** Unreachable for SupervisionOptions.unreachableLostAfterMs: the owner reports its VMs lost. */
  'unreachable-too-long': [{ address: string; reason: string; downMs: number }];
}

/**
 * A connection to a plugin connected to that is lost within this long of its start does not reset the reconnect
 * backoff: a peer that takes each connection and drops it soon after would otherwise be reconnected to every
 * backoffMs (100 ms by default) for as long as it keeps doing it, a TLS handshake and a re-attach each time.
 */
export const STABLE_CONNECTION_MS = 10_000;

/** Where a connected plugin is and since when it is out of reach; calls made meanwhile fail with `error`. */
interface Outage {
  address: string;
  since: number;
  error: PluginUnreachableError;
  attempts: number;
}

/**
 * One plugin process kept alive: restarted with backoff when it dies or stops answering health pings,
 * up to a crash-loop limit. It is the shim's channel, so the shim never sees the process change.
 *
 * A plugin connected to (PluginSpec.connect) is not the host's process: losing it is an outage, not a crash.
 * The host reconnects with the same capped backoff for as long as it takes (the crash-loop limit is for
 * processes it spawns, which a restart may cure), calls fail at once with PluginUnreachableError meanwhile, and
 * after unreachableLostAfterMs the owner is told to report the VMs lost.
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
  /** Set while a plugin connected to is out of reach. */
  private outage: Outage | undefined;
  private lostTimer: NodeJS.Timeout | undefined;
  private reconnects = 0;
  /** When the current connection was made, and how far the reconnect backoff had grown by then. */
  private connectedAt = 0;
  private backoffStep = 0;
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

  get state(): 'running' | 'restarting' | 'unreachable' | 'failed' | 'closed' {
    if (this.closing) return 'closed';
    if (this.failed) return 'failed';
    if (this.outage) return 'unreachable';
    return this.client?.alive ? 'running' : 'restarting';
  }

  /** For host inspection: the state, and for a plugin connected to, where it is and since when it is out of reach. */
  status(): SupervisedStatus {
    const o = this.outage;
    return {
      state: this.state,
      pid: this.client?.processId,
      address: this.spec.connect,
      restarts: this.spec.connect === undefined ? this.restarts : 0,
      reconnects: this.reconnects,
      ...(o ? { unreachable: { since: new Date(o.since).toISOString(), reason: o.error.reason, attempts: o.attempts } } : {}),
    };
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
    // An outage may last minutes: the caller hears of it now rather than at its deadline.
    if (this.outage) return Promise.reject(this.outage.error);
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
    if (this.spec.connect !== undefined) {
      this.lostSight(client.where, client.failure);
      this.ready = client.exited.then(() => this.reconnect(client.where));
      this.ready.catch(() => undefined);
      return;
    }
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

  /** The start of an outage, or news of one under way (a failed attempt): calls made now fail with the latest reason. */
  private lostSight(address: string, why: unknown): void {
    const error =
      why instanceof PluginUnreachableError
        ? why
        : new PluginUnreachableError(this.spec.name, address, why instanceof Error ? why.message : 'the connection was lost');
    if (this.outage) {
      this.outage.error = error;
      return;
    }
    const since = Date.now();
    this.outage = { address, since, error, attempts: 0 };
    this.emit('unreachable', { address, reason: error.reason, since: new Date(since).toISOString() });
    this.armLostTimer(this.outage);
  }

  /** unreachableLostAfterMs from the start of the outage (re-armed when a re-attach fails and the outage goes on). */
  private armLostTimer(outage: Outage): void {
    const after = this.opts.unreachableLostAfterMs;
    clearTimeout(this.lostTimer);
    if (after <= 0) return;
    this.lostTimer = setTimeout(
      () => {
        const o = this.outage;
        if (o !== outage || this.closing) return;
        // A wait longer than a timer holds is made of several.
        if (Date.now() - o.since < after) return this.armLostTimer(o);
        this.emit('unreachable-too-long', { address: o.address, reason: o.error.reason, downMs: Date.now() - o.since });
      },
      // Node fires a timer of more than 2^31-1 ms at once.
      Math.min(MAX_LOST_AFTER_MS, Math.max(0, outage.since + after - Date.now())),
    );
    // An embedder done with its host must not be held by a plugin it can no longer reach.
    this.lostTimer.unref();
  }

  /**
   * Connects again, with the restart backoff, until it works or the host closes: never PluginFailedError. A refusal
   * (another host is served meanwhile, a certificate now refused) is one more failed attempt, its reason the outage's.
   */
  private async reconnect(address: string): Promise<PluginClient> {
    const from = Date.now() - this.connectedAt < STABLE_CONNECTION_MS ? this.backoffStep : 0;
    for (let attempt = 1; ; attempt++) {
      this.backoffStep = from + attempt;
      // The exponent is capped: past 2^30 the delay is maxBackoffMs anyway, and a backoffMs of 0 times 2^1024 is NaN.
      const delay = Math.min(this.opts.backoffMs * 2 ** Math.min(30, this.backoffStep - 1), this.opts.maxBackoffMs);
      await new Promise((r) => setTimeout(r, delay).unref());
      if (this.closing) throw new HvplugError(`plugin ${this.spec.name} is closed`, 'PluginExited');
      if (this.outage) this.outage.attempts = attempt;
      let client: PluginClient;
      try {
        client = await this.spawn();
      } catch (err) {
        this.lostSight(address, err);
        continue;
      }
      this.connectedAt = Date.now();
      const outage = this.outage;
      // Reached: calls made from now on wait for the re-attach instead of failing.
      this.outage = undefined;
      clearTimeout(this.lostTimer);
      try {
        await this.reattaching.run(client, async () => this.reattach?.());
      } catch (err) {
        // The re-attach could not be done over this connection; it goes, and the loop tries a new one.
        if (client === this.client) {
          this.client = undefined;
          client.kill('SIGKILL', `the re-attach failed: ${(err as Error).message}`);
        }
        this.outage = outage;
        if (outage) this.armLostTimer(outage);
        this.lostSight(address, err);
        continue;
      }
      if (client !== this.client || !client.alive) {
        // Lost again during the re-attach: onExit began the next outage and its own loop, which answers the calls.
        return this.ready;
      }
      this.routable = true;
      this.reconnects++;
      this.emit('reconnected', { address, downMs: outage ? Date.now() - outage.since : 0, attempts: attempt });
      return client;
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
          client.kill('SIGKILL', `no answer to ${sessionMethod('ping')} within ${this.opts.healthTimeoutMs} ms (${err.message})`);
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
    clearTimeout(this.lostTimer);
    // A process still in its handshake is closed by spawn() when it comes up; wait for that too.
    await Promise.all([this.client?.close(), this.starting?.then((c) => c.exited).catch(() => undefined)]);
  }

  /** The current process, for tests and diagnostics. */
  current(): PluginClient | undefined {
    return this.client;
  }
}
