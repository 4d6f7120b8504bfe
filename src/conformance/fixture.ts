import { mkdirSync } from 'node:fs';
import { mkdir, rm, truncate, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { CallOpts, ShimVm } from 'hvplug';
import {
  type Capabilities,
  type DeviceType,
  type InitializeResult,
  type MethodName,
  type NetBackend,
  type VmConfigInput,
} from 'hvplug/protocol';
import { describeError, fail } from './check.js';
import { callDeadline } from './deadlines.js';
import { DEVICE_BUILDERS, type DeviceNeeds, type DeviceOf } from './device-builders.js';
import type { EventLog } from './event-log.js';
import type { Janitor } from './janitor.js';
import type { Connection, PluginSession } from './session.js';
import type { ConformanceOptions } from './types.js';
import type { WireMonitor } from './wire-monitor.js';

export type ResolvedOptions = Required<Pick<ConformanceOptions, 'checkTimeoutMs' | 'exitDeadlineMs'>> &
  Pick<ConformanceOptions, 'callTimeoutMs' | 'vmConfig' | 'powerOffConfig'>;

/** What every check of one run shares. */
export interface RunContext {
  readonly options: ResolvedOptions;
  readonly session: PluginSession;
  readonly wire: WireMonitor;
  readonly events: EventLog;
  readonly janitor: Janitor;
  /** The main process's handshake. */
  readonly info: InitializeResult;
  readonly caps: Capabilities;
  /** The run's temporary directory. */
  readonly workDir: string;
  /** What every plugin process of the run is given at initialize. */
  readonly stateDir: string;
  readonly runtimeDir: string;
  /** Makes VM ids unique across runs sharing a plugin state directory. */
  readonly runId: string;
  /** Counters shared by the run: VM ids, vsock CIDs. */
  readonly counters: { vm: number; cid: number };
}

export type PreparedStatus = 'created' | 'running' | 'paused' | 'stopped';

/** The methods that bring a new VM to each status. */
export const PATH_TO: Record<PreparedStatus, readonly MethodName[]> = {
  created: ['vm/create'],
  running: ['vm/create', 'vm/start'],
  paused: ['vm/create', 'vm/start', 'vm/pause'],
  stopped: ['vm/create', 'vm/start', 'vm/stop'],
};

/**
 * One check's view of the run: calls with the check's deadline, VMs and files it creates, all undone in
 * reverse order of creation when the check ends, whatever its outcome.
 */
export class Fixture implements DeviceNeeds {
  private readonly undo: { what: string; fn: () => Promise<void> }[] = [];
  private dir: string | undefined;

  constructor(
    readonly id: string,
    private readonly index: number,
    readonly run: RunContext,
    /** The main plugin process as the check began. */
    readonly conn: Connection,
    readonly signal: AbortSignal,
  ) {}

  get hv(): Connection['hv'] {
    return this.conn.hv;
  }

  get caps(): Capabilities {
    return this.run.caps;
  }

  advertised(method: MethodName): boolean {
    return this.caps.methods.includes(method);
  }

  /** A call's deadline: the method table's, or --call-timeout when the user gave one. */
  deadline(method: string): number | null {
    return callDeadline(method, this.run.options.callTimeoutMs);
  }

  /** Call options with the check's signal and deadline: `timeoutMs` when the check needs its own, else deadline(method). */
  opts(method: MethodName, timeoutMs?: number | null): CallOpts {
    return { signal: this.signal, timeoutMs: timeoutMs === undefined ? this.deadline(method) : timeoutMs };
  }

  newVmId(): string {
    return `${this.run.runId}-${++this.run.counters.vm}`;
  }

  cid(): number {
    return 100 + ++this.run.counters.cid;
  }

  netBackend(): NetBackend {
    // user needs nothing on the host; vhost-user a socket, which the suite stands in for; tap an interface
    // the suite cannot create. With none declared, user: the shim's refusal then shows the contradiction.
    return (['user', 'vhost-user', 'tap'] as const).find((b) => this.caps.netBackends.includes(b)) ?? 'user';
  }

  /** A VM config every plugin should take: small, with room to hot-plug vCPUs and memory. */
  config(overrides: VmConfigInput = {}): VmConfigInput {
    return {
      name: 'conformance',
      vcpus: { boot: 1, max: 4 },
      memory: { sizeMiB: 128, maxMiB: 512, slots: 4 },
      console: this.caps.consoleKinds[0] ?? 'log',
      ...this.run.options.vmConfig,
      ...overrides,
    };
  }

  /** Deletes the VM when the check ends (unless the check deleted it). */
  track(vmId: string, conn: Connection = this.conn): void {
    this.defer(`VM ${vmId}`, () => this.run.janitor.releaseVm(conn, vmId, this.id));
  }

  async createVm(overrides: VmConfigInput = {}, conn: Connection = this.conn): Promise<ShimVm> {
    const vmId = this.newVmId();
    this.track(vmId, conn);
    return conn.hv.createVm({ vmId, config: this.config(overrides) }, this.opts('vm/create'));
  }

  /** A new VM brought to `status` through the protocol's own transitions. */
  async vmIn(status: PreparedStatus, overrides: VmConfigInput = {}, conn: Connection = this.conn): Promise<ShimVm> {
    const vm = await this.createVm(overrides, conn);
    if (status === 'created') return vm;
    await vm.start(undefined, this.opts('vm/start'));
    if (status === 'paused') await vm.pause(undefined, this.opts('vm/pause'));
    if (status === 'stopped') await vm.stop({ graceMs: 2_000 }, this.opts('vm/stop'));
    return vm;
  }

  /** The VM's host processes as the plugin reports them (vm/pids, else vm/info's pid); empty when it cannot say. */
  async vmPids(vm: ShimVm): Promise<number[]> {
    let pids: number[] = [];
    if (this.advertised('vm/pids')) pids = (await vm.pids(undefined, this.opts('vm/pids'))).pids;
    else if (this.advertised('vm/info')) pids = [(await vm.info(undefined, this.opts('vm/info'))).pid].filter((p): p is number => p !== undefined);
    // The suite kills these to play a VMM crash: never the plugin, never the suite.
    const own = pids.find((p) => p === process.pid || this.run.session.processes.has(p));
    if (own !== undefined) fail(`the plugin reports ${own}, a plugin process, as a process of VM ${vm.id}`);
    return pids;
  }

  /** A path in the check's own directory. */
  path(name: string): string {
    if (!this.dir) {
      // Short, because unix socket paths are limited to 108 bytes.
      this.dir = join(this.run.workDir, String(this.index));
      mkdirSync(this.dir, { recursive: true });
    }
    return join(this.dir, name);
  }

  async imageFile(name: string, bytes: number): Promise<string> {
    const p = this.path(name);
    await writeFile(p, '');
    await truncate(p, bytes);
    this.defer(`file ${p}`, () => rm(p, { force: true }));
    return p;
  }

  async directory(name: string): Promise<string> {
    const p = this.path(name);
    await mkdir(p, { recursive: true });
    this.defer(`directory ${p}`, () => rm(p, { recursive: true, force: true }));
    return p;
  }

  async socket(name: string): Promise<string> {
    const p = this.path(name);
    const server: Server = createServer((s) => s.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(p, resolve);
    });
    this.defer(`socket ${p}`, () => new Promise<void>((r) => server.close(() => r())));
    return p;
  }

  async device<T extends DeviceType>(type: T, id: string): Promise<DeviceOf<T>> {
    const build = DEVICE_BUILDERS[type] as (id: string, needs: DeviceNeeds) => Promise<DeviceOf<T>>;
    return build(id, this);
  }

  /** A request sent straight through the client, past the shim's own validation and capability gate. */
  raw(method: string, params: unknown, timeoutMs = this.deadline(method)): Promise<unknown> {
    return this.conn.client.call(method, params, { timeoutMs, signal: this.signal });
  }

  /** Like raw, for params broken on purpose (the wire check then knows they are not the suite's mistake). */
  rawInvalid(method: string, params: unknown): Promise<unknown> {
    this.run.wire.expectInvalid(method, params);
    return this.raw(method, params);
  }

  /** Another process of the same plugin, closed with the check. */
  async connect(kind: string, protocolVersions?: readonly string[]): Promise<Connection> {
    const conn = await this.run.session.connect(kind, { protocolVersions });
    this.defer(`plugin process ${conn.tag}`, async () => {
      await this.run.session.disconnect(conn);
    });
    return conn;
  }

  defer(what: string, fn: () => Promise<void>): void {
    this.undo.push({ what, fn });
  }

  /** Undoes everything the check created, newest first; failures go to the janitor's report. */
  async cleanup(): Promise<void> {
    for (const { what, fn } of this.undo.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        this.run.janitor.problems.push({ check: this.id, what: `cleaning up ${what}: ${describeError(err)}` });
      }
    }
  }
}
