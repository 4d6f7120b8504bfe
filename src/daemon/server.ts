import { chmod, chown, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import * as z from 'zod/mini';
import { createMessageConnection, ResponseError, type CancellationToken, type Message, type MessageConnection } from 'vscode-jsonrpc/node';
import { ErrorCode, methodDef, type MethodName, type NewVmMethod, type Progress } from 'hvplug/protocol';
import { FramedReader, FramedWriter, tapReader } from 'hvplug/transport';
import { HOST_VERSION, VmmFailureError, VmNotFoundError, VmOwnedError, type MigrationReport, type PluginHost } from '../core/index.js';
import { describeOwner, VmLeases } from '../core/ownership.js';
import { resolveRef } from '../core/vm-ref.js';
import {
  API_VERSION,
  CALL_REF_DECLINED_CODE,
  CallRefDeclined,
  DAEMON_METHODS,
  MAX_ANSWER_BYTES,
  MAX_CALLS_PER_CLIENT,
  MAX_CLIENTS,
  MAX_REQUEST_BYTES,
  MAX_UNREAD_ANSWER_BYTES,
  PluginCall,
  PROGRESS,
  ProgressToken,
  SERVED_METHODS,
  VmCall,
  type AttachedVm,
  type Hello,
  type PluginView,
} from './api.js';
import { toResponseError } from './errors.js';
import { EventFeed, EventHub } from './events.js';
import { openDestination } from './migration.js';

const RequestId = z.union([z.number().check(z.int()), z.string().check(z.maxLength(64))]);
/** What a client may send: requests, and the cancellation of one. Anything else ends its connection. */
const Incoming = z.union([
  z.object({ jsonrpc: z.literal('2.0'), id: RequestId, method: z.string().check(z.maxLength(128)), params: z.optional(z.unknown()) }),
  z.object({ jsonrpc: z.literal('2.0'), method: z.literal('$/cancelRequest'), params: z.object({ id: RequestId }) }),
]);


/** The client's progressToken is the client's: the host's shim makes its own, and what it hears is passed on under the client's. */
function withoutToken(params: Record<string, unknown>): Record<string, unknown> {
  if (params.progressToken === undefined) return params;
  const { progressToken: _token, ...rest } = params;
  return rest;
}

export interface DaemonServerOptions {
  host: PluginHost;
  socket: string;
  logger: Logger;
  /** Resolves once the host has re-attached the state directory's VMs; calls wait for it. */
  ready: Promise<unknown>;
  /** A group whose members may use the socket too: it is then owned by that group, mode 0660. */
  socketGroup?: number;
}

/**
 * The management API on a unix socket. Each client gets its own JSON-RPC connection; whatever one does (garbage,
 * a flood, leaving mid-call) ends that connection alone. A call a client left goes on in the host: a VM half
 * started because its caller went away would be worse than an answer nobody reads.
 */
export class DaemonServer {
  private readonly server: Server;
  private readonly clients = new Set<Socket>();
  private readonly views = new Map<string, PluginView>();
  private readonly leases: VmLeases;
  private readonly events: EventHub;

  private constructor(private readonly opts: DaemonServerOptions) {
    this.leases = new VmLeases(opts.host.stateDir);
    this.events = new EventHub(opts.host);
    this.server = createServer({ allowHalfOpen: false }, (socket) => this.accept(socket));
    this.server.maxConnections = MAX_CLIENTS;
  }

  /**
   * Listens on the socket, 0600 from the start (umask), replacing one a dead daemon left. With a group, the group is
   * given the socket before its mode lets a group in, so no other group ever could.
   */
  static async listen(opts: DaemonServerOptions): Promise<DaemonServer> {
    const daemon = new DaemonServer(opts);
    await rm(opts.socket, { force: true });
    await new Promise<void>((resolve, reject) => {
      const old = process.umask(0o177);
      try {
        daemon.server.once('error', reject);
        daemon.server.listen(opts.socket, () => {
          daemon.server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(old);
      }
    });
    if (opts.socketGroup === undefined) await chmod(opts.socket, 0o600);
    else {
      await chown(opts.socket, process.getuid?.() ?? -1, opts.socketGroup);
      await chmod(opts.socket, 0o660);
    }
    daemon.server.on('error', (err) => opts.logger.error({ err: err.message }, 'daemon socket error'));
    return daemon;
  }

  /** Stops accepting, drops every client, removes the socket. Calls under way in the host are not waited for. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.events.close();
    for (const s of this.clients) s.destroy();
    await closed;
    await rm(this.opts.socket, { force: true });
  }

  private accept(socket: Socket): void {
    const log = this.opts.logger;
    this.clients.add(socket);
    let calls = 0;
    let dropped = false;
    let feed: EventFeed | undefined;
    /** A VMM console socket, joined to this connection once the answer that says so is written. */
    let joining: Socket | undefined;
    let raw = false;
    const drop = (reason: string, level: 'debug' | 'warn' = 'warn'): void => {
      // Raw, the connection is the console's: each side's close ends the other, not the JSON-RPC connection's.
      if (dropped || raw) return;
      dropped = true;
      log[level]({ reason }, 'daemon client dropped');
      socket.destroy();
    };
    socket.on('error', (err) => drop(err.message, 'debug'));
    socket.on('close', () => {
      joining?.destroy();
      this.clients.delete(socket);
      if (feed) this.events.feeds.delete(feed);
      conn.dispose();
    });
    const framed = new FramedReader(socket, MAX_REQUEST_BYTES);
    const reader = tapReader(framed, (msg: Message) => {
      if (Incoming.safeParse(msg).success) return true;
      drop('sent a message that is not a request');
      return false;
    });
    const writer = new FramedWriter(socket, MAX_ANSWER_BYTES, (frame) => {
      if (raw) return;
      socket.write(frame);
      if (joining) {
        // The console call is the connection's only one, so this frame is its answer: from here on, bytes.
        raw = true;
        framed.release();
        joinRaw(socket, joining);
        // Not in the middle of vscode-jsonrpc's own write; a timer never throws.
        setImmediate(() => {
          try {
            conn.dispose();
          } catch (err) {
            log.debug({ err: (err as Error).message }, 'disposing a console connection');
          }
        });
        return;
      }
      if (socket.writableLength > MAX_UNREAD_ANSWER_BYTES) drop(`left more than ${MAX_UNREAD_ANSWER_BYTES} bytes of answers unread`);
    });
    const conn: MessageConnection = createMessageConnection(reader, writer, {
      error: (m) => log.debug({ detail: m }, 'daemon client connection'),
      warn: (m) => log.debug({ detail: m }, 'daemon client connection'),
      info: () => undefined,
      log: () => undefined,
    });
    conn.onError(([err]) => drop(err.message));
    conn.onClose(() => drop('closed', 'debug'));

    /** Every handler: the call cap, the wait for re-attach, and the error as the client reads it. */
    const serve = <T>(name: string, work: () => Promise<T>): Promise<T> => {
      if (calls >= MAX_CALLS_PER_CLIENT) {
        return Promise.reject(new ResponseError(ErrorCode.ResourceExhausted, `more than ${MAX_CALLS_PER_CLIENT} calls under way on one connection`));
      }
      calls++;
      log.debug({ method: name }, 'daemon call');
      return this.opts.ready
        .then(work)
        .catch((err: unknown) => Promise.reject(toResponseError(err, name)))
        .finally(() => calls--);
    };

    for (const method of SERVED_METHODS) {
      conn.onRequest(method, (raw: unknown, token: CancellationToken) => serve(method, () => this.forward(conn, method, raw, token)));
    }
    const own = <K extends keyof typeof DAEMON_METHODS>(
      key: K,
      handler: (params: z.output<(typeof DAEMON_METHODS)[K]['params']>, token: CancellationToken) => Promise<z.input<(typeof DAEMON_METHODS)[K]['result']>>,
    ): void => {
      const def = DAEMON_METHODS[key];
      conn.onRequest(def.name, (raw: unknown, token: CancellationToken) =>
        serve(def.name, async () => handler(def.params.parse(raw ?? {}) as z.output<(typeof DAEMON_METHODS)[K]['params']>, token)),
      );
    };
    own('hello', async () => this.hello());
    own('records', () => this.opts.host.records());
    own('attach', ({ vmId }) => this.attach(vmId));
    // Its params are parsed here, not by own(): a client of another build naming a method this daemon does not send
    // this way is declined (the client then takes the long way), not failed.
    const callRef = DAEMON_METHODS.callRef;
    conn.onRequest(callRef.name, (raw: unknown, token: CancellationToken) => serve(callRef.name, () => this.callRef(conn, raw, token)));
    own('plugin', ({ plugin }) => this.view(plugin));
    own('forget', async ({ vmId }) => {
      await this.forget(vmId);
      return {};
    });
    own('migrate', (params, token) => this.migrate(conn, params, token));
    own('prepareIncoming', ({ vmId, plugin, config, from, address }) => this.opts.host.prepareIncoming(vmId, plugin, config, from, address));
    own('commitIncoming', async ({ vmId }) => {
      await this.opts.host.commitIncoming(vmId);
      return {};
    });
    own('abortIncoming', async ({ vmId }) => {
      await this.opts.host.abortIncoming(vmId);
      return {};
    });
    own('subscribe', async ({ vmIds }) => {
      const filter = vmIds ? new Set(vmIds) : undefined;
      if (feed) feed.refilter(filter);
      else {
        // An event listener's send: a connection gone meanwhile is the close handler's business, never a throw here.
        const send = (method: string, params: unknown): void => {
          if (!dropped) conn.sendNotification(method, params).catch(() => undefined);
        };
        feed = new EventFeed(socket, send, filter);
        this.events.feeds.add(feed);
      }
      return {};
    });
    own('console', async ({ vmId }) => {
      if (calls > 1 || feed) {
        throw new ResponseError(ErrorCode.InvalidRequest, `${DAEMON_METHODS.console.name} joins a console to its connection: it must be the connection's only call`);
      }
      const where = await this.consoleOf(vmId);
      if (where.kind !== 'socket') return { ...where, joined: false };
      const vmm = await connectConsole(vmId, where.path);
      if (dropped) {
        vmm.destroy();
        throw new Error('the client left');
      }
      joining = vmm;
      return { ...where, joined: true };
    });
    conn.listen();
  }

  private async consoleOf(vmId: string): Promise<{ kind: 'log' | 'socket' | 'pty'; path: string }> {
    const vm = await this.opts.host.attach(vmId);
    if (!vm) throw new VmNotFoundError(vmId, `no VM ${vmId} in the state directory ${this.opts.host.stateDir}`);
    return vm.console({});
  }

  private hello(): Hello {
    const host = this.opts.host;
    return { apiVersion: API_VERSION, pid: process.pid, stateDir: host.stateDir, runtimeDir: host.runtimeDir, socket: this.opts.socket, version: HOST_VERSION, identity: host.identity };
  }

  /** One protocol call, through the host's shim: validated, gated, recorded there as for any embedder's call. */
  private async forward(conn: MessageConnection, method: MethodName, raw: unknown, token: CancellationToken): Promise<unknown> {
    const spec = methodDef(method);
    const abort = new AbortController();
    const cancelled = token.onCancellationRequested(() => abort.abort(new Error('the client cancelled the call')));
    try {
      if (spec.scope === 'vm') {
        const { vmId, ...params } = VmCall.parse(raw);
        const vm = await this.opts.host.attach(vmId);
        if (!vm) throw new VmNotFoundError(vmId, `no VM ${vmId} in the state directory ${this.opts.host.stateDir}`);
        return await vm.hypervisor.invoke(method, withoutToken(params), { ...this.progressOpts(conn, params), signal: abort.signal }, vm);
      }
      const call = PluginCall.parse(raw);
      const hv = await this.opts.host.hypervisor(call.plugin);
      const opts = { ...this.progressOpts(conn, call.params), signal: abort.signal };
      if (spec.scope === 'new-vm') {
        const vm = await hv.bringUp(method as NewVmMethod, withoutToken(call.params), opts);
        return { status: vm.status, ...(vm.state !== undefined ? { state: vm.state } : {}) };
      }
      return await hv.invoke(method, withoutToken(call.params), opts);
    } finally {
      cancelled.dispose();
    }
  }

  /**
   * hvplug/callRef: the call, when it is the one the full CLI would make with the same outcome; declined otherwise. A
   * failure before the call declines too, so that the full CLI meets it again and words it as it always does.
   */
  private async callRef(conn: MessageConnection, raw: unknown, token: CancellationToken): Promise<z.input<(typeof DAEMON_METHODS)['callRef']['result']>> {
    const p = DAEMON_METHODS.callRef.params.safeParse(raw);
    if (!p.success) throw declined('ref', `${DAEMON_METHODS.callRef.name}: params this daemon does not take: ${p.error.message}`);
    const { ref, method } = p.data;
    if (p.data.apiVersion !== API_VERSION) throw declined('apiVersion', `the client speaks API version ${p.data.apiVersion}, this daemon ${API_VERSION}`);
    const host = this.opts.host;
    let vmId: string;
    try {
      // An exact id is looked up alone: reading every record for it would cost the command more than the call.
      const match = await resolveRef(ref, host.stateDir, (vmId) => host.record(vmId), async () => (await host.records()).records);
      if ('failure' in match) throw declined('ref', match.failure);
      vmId = match.record.vmId;
      const vm = await host.attach(vmId);
      if (!vm) throw declined('gone', `VM ${vmId} left the state directory ${host.stateDir} meanwhile`);
      if (vm.ownedBy !== undefined) throw declined('owned', `VM ${vmId} is driven by ${vm.ownedBy}`);
      const view = await this.view(match.record.plugin);
      if (methodDef(method).gated && !view.info.capabilities.methods.includes(method)) throw declined('capability', `plugin ${view.name} does not advertise ${method}`);
    } catch (err) {
      if (err instanceof ResponseError && CallRefDeclined.safeParse(err.data).success) throw err;
      throw declined('ref', `before ${method}: ${err instanceof Error ? err.message : String(err)}`);
    }
    try {
      return { vmId, result: await this.forward(conn, method, { vmId }, token) };
    } catch (err) {
      // In the words a raw call of the method gets: its own name on invalid params, not callRef's.
      throw toResponseError(err, method);
    }
  }

  /**
   * PluginHost.migrate of one of this host's VMs, to the daemon of the destination state directory or a host of this
   * one's plugins opened on it for the migration. The client's cancellation is the migration's abort (the source
   * plugin rolls back, or the migration is left undecided); a client that only leaves lets it go on.
   */
  private async migrate(conn: MessageConnection, p: z.output<(typeof DAEMON_METHODS)['migrate']['params']>, token: CancellationToken): Promise<MigrationReport> {
    const host = this.opts.host;
    const vm = await host.attach(p.vmId);
    if (!vm) throw new VmNotFoundError(p.vmId, `no VM ${p.vmId} in the state directory ${host.stateDir}`);
    const destination = await openDestination(host, p.destination.stateDir, p.destination.runtimeDir);
    const abort = new AbortController();
    const cancelled = token.onCancellationRequested(() => abort.abort(new Error('the client cancelled the migration')));
    try {
      return await host.migrate(p.vmId, destination, {
        plugin: p.plugin,
        address: p.address,
        signal: abort.signal,
        ...this.progressOpts(conn, p.progressToken === undefined ? {} : { progressToken: p.progressToken }),
      });
    } finally {
      cancelled.dispose();
      await destination.close().catch((err: Error) => this.opts.logger.warn({ err: err.message, stateDir: destination.stateDir }, 'cannot close the migration destination'));
    }
  }

  private progressOpts(conn: MessageConnection, params: Record<string, unknown>): { onProgress?: (p: Progress) => void } {
    const token = ProgressToken.safeParse(params.progressToken);
    if (!token.success) return {};
    return { onProgress: (p) => void conn.sendNotification(PROGRESS, { token: token.data, value: p.value }).catch(() => undefined) };
  }

  private async view(plugin: string): Promise<PluginView> {
    const known = this.views.get(plugin);
    if (known) return known;
    const hv = await this.opts.host.hypervisor(plugin);
    const spec = await this.opts.host.catalog.resolve(plugin);
    const view: PluginView = { name: plugin, info: hv.info, defaults: spec.defaults };
    this.views.set(plugin, view);
    return view;
  }

  private async attach(vmId: string): Promise<AttachedVm | null> {
    const host = this.opts.host;
    const vm = await host.attach(vmId);
    if (!vm) return null;
    const record = (await host.records()).records.find((r) => r.vmId === vmId);
    if (!record) return null;
    return {
      plugin: await this.view(record.plugin),
      status: vm.status,
      config: vm.config,
      ...(vm.state !== undefined ? { state: vm.state } : {}),
      ...(vm.ownedBy !== undefined ? { ownedBy: vm.ownedBy } : {}),
    };
  }

  /**
   * A record the host does not drive: gone already after a delete through the host, or one whose plugin never came
   * up. Another live host's is left to it.
   */
  private async forget(vmId: string): Promise<void> {
    const host = this.opts.host;
    if (await host.vm(vmId)) return;
    if (!(await host.records()).records.some((r) => r.vmId === vmId)) return;
    // Taken for the removal, so that no host re-attaches the VM meanwhile.
    const lease = await this.leases.acquire(vmId);
    if (!lease.ok) throw new VmOwnedError(vmId, describeOwner(lease.owner));
    try {
      await host.store.delete(vmId);
    } finally {
      await this.leases.release(vmId);
    }
  }
}

/** hvplug/callRef's refusal: nothing was done, and the client is to take the long way. */
function declined(why: CallRefDeclined['declined'], message: string): ResponseError<CallRefDeclined> {
  return new ResponseError(CALL_REF_DECLINED_CODE, `declined: ${message}`, { declined: why });
}

function connectConsole(vmId: string, path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const vmm = createConnection(path);
    vmm.once('error', (err) => reject(new VmmFailureError(`cannot connect to the console of VM ${vmId} (${path}): ${err.message}`, err.message)));
    vmm.once('connect', () => resolve(vmm));
  });
}

/**
 * A client and a VMM console, joined both ways with backpressure (pipe): neither side's bytes wait in the daemon
 * beyond the sockets' own buffers. Either side's end or error ends both.
 */
function joinRaw(client: Socket, vmm: Socket): void {
  vmm.on('error', () => undefined);
  vmm.on('close', () => client.destroy());
  client.pipe(vmm);
  vmm.pipe(client);
}
