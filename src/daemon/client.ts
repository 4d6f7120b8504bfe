import { connect, type Socket } from 'node:net';
import type * as z from 'zod/mini';
import { CancellationTokenSource, createMessageConnection, ResponseError, type MessageConnection } from 'vscode-jsonrpc/node';
import { FramedReader, FramedWriter } from 'hvplug/transport';
import { HvplugError, ShimHypervisor, TimeoutError, type IncomingTarget, type MigrateOptions, type MigrationDestination, type MigrationReport, type ShimVm, type VmRecord } from '../core/index.js';
import type { RecordError, StateStore } from '../core/state-store.js';
import { ownerAlive } from '../core/ownership.js';
import { mergeDefaults } from '../core/plugin-spec.js';
import type { ChannelCallOptions, NotificationListener, PluginChannel } from '../shim/channel.js';
import { randomUUID } from 'node:crypto';
import { InitializeResult, notifications } from 'hvplug/protocol';
import {
  API_VERSION,
  DAEMON_METHODS,
  HelloVersion,
  MAX_ANSWER_BYTES,
  MAX_REQUEST_BYTES,
  OWN_CALL_TIMEOUT_MS,
  PROGRESS,
  wireParams,
  type Hello,
  type PluginView,
} from './api.js';
import { fromResponseError } from './errors.js';
import { DaemonVersionError } from '../errors/index.js';
import { liveDaemon, type DaemonLockInfo } from './lock.js';

/**
 * What the CLI's VM commands need of a host: a PluginHost in the process, or the daemon's through RemoteHost. Both
 * hand out real ShimVm and ShimHypervisor objects, so a command reads the same either way.
 */
export interface VmHost {
  readonly stateDir: string;
  readonly store: Pick<StateStore, 'delete'>;
  records(): Promise<{ records: VmRecord[]; errors: RecordError[] }>;
  attach(vmId: string): Promise<ShimVm | undefined>;
  hypervisor(name: string): Promise<ShimHypervisor>;
  close(): Promise<void>;
}

export { OWN_CALL_TIMEOUT_MS } from './api.js';
/** A protocol call's deadline is the daemon's to keep; the client waits this much longer before it gives up on it. */
export const DEADLINE_MARGIN_MS = 5_000;
/** A daemon that has taken its lock but is not listening yet (it is starting) is waited for this long. */
const CONNECT_WAIT_MS = 3_000;

type Own = typeof DAEMON_METHODS;

/** One connection to the daemon. */
export class DaemonClient {
  private readonly progress = new Set<NotificationListener>();
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly conn: MessageConnection,
    readonly daemon: DaemonLockInfo,
  ) {
    conn.onNotification(PROGRESS, (params: unknown) => {
      for (const l of this.progress) l(PROGRESS, params, 0);
    });
    conn.onClose(() => this.dispose());
    conn.onError(() => this.dispose());
    conn.listen();
  }

  static connect(daemon: DaemonLockInfo): Promise<DaemonClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(daemon.socket);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        // From here the connection's reader reports errors; this keeps an unhandled 'error' from crashing the CLI.
        socket.on('error', () => undefined);
        const conn = createMessageConnection(new FramedReader(socket, MAX_ANSWER_BYTES), new FramedWriter(socket, MAX_REQUEST_BYTES));
        resolve(new DaemonClient(socket, conn, daemon));
      });
    });
  }

  /** A notification the daemon sends unasked (the event stream): its params are the listener's to parse. */
  onNotification(method: string, listener: (params: unknown) => void): () => void {
    const d = this.conn.onNotification(method, listener);
    return () => d.dispose();
  }

  // Declared before `ended`, whose initializer sets it: a field declared after would be reset to undefined.
  private markEnded!: () => void;
  /** Resolves when the connection ends, whoever ended it. */
  readonly ended: Promise<void> = new Promise((resolve) => (this.markEnded = resolve));

  onProgress(listener: NotificationListener): () => void {
    this.progress.add(listener);
    return () => this.progress.delete(listener);
  }

  /** One of the daemon's own calls, its answer parsed. */
  async own<K extends keyof Own>(key: K, params: z.input<Own[K]['params']>): Promise<z.output<Own[K]['result']>> {
    const def: Own[keyof Own] = DAEMON_METHODS[key];
    const raw = await this.request(def.name, params, { timeoutMs: 'timeoutMs' in def ? def.timeoutMs : OWN_CALL_TIMEOUT_MS });
    return def.result.parse(raw) as z.output<Own[K]['result']>;
  }

  /** A request; the deadline and the caller's signal cancel it in the daemon ($/cancelRequest) as well as here. */
  request(method: string, params: unknown, opts: { timeoutMs: number | null; signal?: AbortSignal }): Promise<unknown> {
    if (this.closed) return Promise.reject(this.gone(method));
    const source = new CancellationTokenSource();
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const ended = new Promise<never>((_, reject) => {
      if (opts.timeoutMs !== null) {
        const ms = opts.timeoutMs + DEADLINE_MARGIN_MS;
        timer = setTimeout(() => {
          source.cancel();
          reject(new TimeoutError(method, ms, `${method} through the hvplug daemon (pid ${this.daemon.pid}) got no answer within ${ms} ms`));
        }, ms);
      }
      onAbort = () => {
        source.cancel();
        reject(opts.signal?.reason instanceof Error ? opts.signal.reason : new Error(`${method} was cancelled`));
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
    // Settled after the race is decided (an abort after the answer) it is nobody's rejection.
    ended.catch(() => undefined);
    const answer = this.conn.sendRequest(method, params, source.token).catch((err: unknown) => {
      if (err instanceof ResponseError && !this.closed) throw fromResponseError(err.code, err.message, err.data);
      throw this.closed ? this.gone(method) : err;
    });
    return Promise.race([answer, ended]).finally(() => {
      clearTimeout(timer);
      if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
      source.dispose();
    });
  }

  private gone(method: string): HvplugError {
    return new HvplugError(`the hvplug daemon (pid ${this.daemon.pid}) closed the connection; ${method} got no answer`, 'ProtocolError');
  }

  private dispose(): void {
    if (this.closed) return;
    this.closed = true;
    this.conn.dispose();
    this.socket.destroy();
    this.markEnded();
  }

  close(): Promise<void> {
    this.dispose();
    return Promise.resolve();
  }
}

/** A plugin as the daemon serves it: the client's shim calls go through the socket under their own names. */
class DaemonChannel implements PluginChannel {
  readonly info: InitializeResult;

  constructor(
    private readonly client: DaemonClient,
    private readonly view: PluginView,
  ) {
    this.info = view.info;
  }

  async call(method: string, params: unknown, opts: ChannelCallOptions): Promise<unknown> {
    const result = await this.client.request(method, wireParams(method, this.view.name, params), opts);
    opts.onAnswer?.();
    return result;
  }

  onNotification(listener: NotificationListener): () => void {
    return this.client.onProgress(listener);
  }
}

/**
 * The daemon's host, seen from a client: records and VMs are the daemon's, driven through its API. It is also a
 * migration's destination (its daemon carries out the destination's steps) and can have its daemon migrate a VM out.
 */
export class RemoteHost implements VmHost, MigrationDestination {
  readonly stateDir: string;
  readonly identity: string;
  readonly store: Pick<StateStore, 'delete'>;
  private readonly shims = new Map<string, ShimHypervisor>();

  constructor(
    readonly client: DaemonClient,
    readonly hello: Hello,
  ) {
    this.stateDir = hello.stateDir;
    this.identity = hello.identity;
    this.store = { delete: async (vmId) => void (await client.own('forget', { vmId })) };
  }

  records(): Promise<{ records: VmRecord[]; errors: RecordError[] }> {
    return this.client.own('records', {});
  }

  async attach(vmId: string): Promise<ShimVm | undefined> {
    const found = await this.client.own('attach', { vmId });
    if (!found) return undefined;
    const vm = this.shim(found.plugin).adopt(vmId, found.config, found.status, found.state);
    vm.ownedBy = found.ownedBy;
    return vm;
  }

  async hypervisor(name: string): Promise<ShimHypervisor> {
    return this.shims.get(name) ?? this.shim(await this.client.own('plugin', { plugin: name }));
  }

  async prepareIncoming(vmId: string, plugin: string, config: VmRecord['config'], from: string, address?: string): Promise<IncomingTarget> {
    return this.client.own('prepareIncoming', { vmId, plugin, config, from, ...(address === undefined ? {} : { address }) });
  }

  async commitIncoming(vmId: string): Promise<void> {
    await this.client.own('commitIncoming', { vmId });
  }

  async abortIncoming(vmId: string): Promise<void> {
    await this.client.own('abortIncoming', { vmId });
  }

  /**
   * The daemon migrates one of its VMs to the host of another state directory (PluginHost.migrate in the daemon):
   * that directory's daemon, or a host the daemon opens there (runtimeDir: its runtime directory).
   */
  async migrate(
    vmId: string,
    destination: { stateDir: string; runtimeDir?: string },
    opts: Pick<MigrateOptions, 'plugin' | 'address' | 'onProgress'> = {},
  ): Promise<MigrationReport> {
    const token = `migrate-${randomUUID()}`;
    const progress = notifications[PROGRESS].params;
    const off = this.client.onProgress((_, params) => {
      const p = progress.safeParse(params);
      if (p.success && p.data.token === token) opts.onProgress?.(p.data);
    });
    try {
      const report = await this.client.own('migrate', {
        vmId,
        destination,
        progressToken: token,
        ...(opts.plugin === undefined ? {} : { plugin: opts.plugin }),
        ...(opts.address === undefined ? {} : { address: opts.address }),
      });
      return { ...report, downtimeMs: report.downtimeMs };
    } finally {
      off();
    }
  }

  private shim(view: PluginView): ShimHypervisor {
    let hv = this.shims.get(view.name);
    if (!hv) {
      // The host merges its defaults under the raw config before validating it; so does this shim, which validates first.
      hv = new ShimHypervisor(new DaemonChannel(this.client, view), { withDefaults: (config) => mergeDefaults(view.defaults, config) });
      this.shims.set(view.name, hv);
    }
    return hv;
  }

  close(): Promise<void> {
    for (const hv of this.shims.values()) hv.dispose();
    return this.client.close();
  }
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * The daemon of the state directory, when one runs: undefined when none does (the caller runs its own host). A
 * daemon that runs but cannot be reached is an error, never a reason to go around it: a host of the caller's own would
 * find the daemon's VMs leased and could only look at them.
 */
export async function openDaemonHost(stateDir: string): Promise<RemoteHost | undefined> {
  const daemon = await liveDaemon(stateDir);
  if (!daemon) return undefined;
  const deadline = Date.now() + CONNECT_WAIT_MS;
  let client: DaemonClient;
  for (;;) {
    try {
      client = await DaemonClient.connect(daemon);
      break;
    } catch (err) {
      if (!ownerAlive(daemon)) return undefined;
      const code = errnoOf(err);
      if ((code === 'ENOENT' || code === 'ECONNREFUSED') && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      throw new HvplugError(
        `the hvplug daemon (pid ${daemon.pid}) of the state directory ${stateDir} does not answer on ${daemon.socket}: ${(err as Error).message}`,
        'ProtocolError',
      );
    }
  }
  // The version first, on its own: a daemon of another API may answer a hello of another shape too.
  const raw = await client.request(DAEMON_METHODS.hello.name, {}, { timeoutMs: OWN_CALL_TIMEOUT_MS }).catch(async (err: unknown) => {
    await client.close();
    throw err;
  });
  const version = HelloVersion.safeParse(raw);
  if (!version.success || version.data.apiVersion !== API_VERSION) {
    await client.close();
    throw new DaemonVersionError(version.data?.apiVersion, API_VERSION, version.data?.version, daemon.pid);
  }
  return new RemoteHost(client, DAEMON_METHODS.hello.result.parse(raw));
}
