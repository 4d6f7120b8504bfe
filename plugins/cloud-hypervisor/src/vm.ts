// One VM and its VMM as the plugin tracks them: the status (checked before every call, since the VMM's
// status codes do not tell a wrong state from a failure), the events read from the event monitor file,
// the VMM's exit, and the state blob a later plugin process needs to take the VM back.
import type { ChildProcess } from 'node:child_process';
import { watch, type FSWatcher } from 'node:fs';
import { proc, ServedVm, stateStatus, type EventInput, type Logger, type WaitResult } from 'hvplug/plugin-sdk';
import type { Device, VmConfig, VmResult, VmStatus } from 'hvplug/protocol';
import { ChConnectionError, CloudHypervisorClient } from './api-client.js';
import { AGENT_VSOCK_ID, type AgentVsock } from './config-map.js';
import type { ChEvent } from './event-monitor.js';
import { EventTail } from './event-tail.js';
import { killVmm, type ExitInfo } from './launcher.js';
import type { VmPaths } from './paths.js';
import type { PluginOptions } from './settings.js';
import { vmState, writeStateFile, type VmState } from './state.js';
import type { Json } from './json.js';
import { announcedFor, exitVerdict } from './vm-events.js';

export interface VmDeps {
  emit(event: EventInput): void;
  readonly log: Logger;
}

export interface VmmProcess {
  readonly pid: number;
  readonly startTicks: number;
  /** Set when this plugin process started the VMM: it is then its parent and learns its exit status. */
  readonly child?: ChildProcess;
  readonly exited?: Promise<ExitInfo>;
}

export interface ExitRecord {
  readonly code: number | null;
  readonly signal: string | null;
  readonly reason: string;
}

/** How often the event file is read besides on inotify wake-ups, and how often an adopted VMM's /proc entry is checked. */
const POLL_MS = 250;
/** Connection failures that mean nobody serves the socket any more: the VMM may be dying. */
const GONE = new Set(['ECONNRESET', 'ECONNREFUSED', 'ENOENT', 'EPIPE']);
/** How long a query that found the socket dead waits for the VMM's exit to be seen (a child's at once, an adopted VMM's within a /proc poll). */
const EXIT_SEEN_MS = 3_000;
/**
 * How far the events read may run ahead of the offset in the state the host holds before a state goes to it for
 * that alone: a catch-up after a restart reads no more than this again (some 2000 pause+resume cycles' events,
 * 4 reads of MAX_READ_BYTES), for one durable record write per that many bytes.
 */
const CHECKPOINT_BYTES = 1024 * 1024;

/** A live migration under way: its events belong to it (a pause in its last phase is no pause of the VM). */
export interface MigrationWatch {
  readonly role: 'incoming' | 'outgoing';
  /** Sees each `vm` event while the migration runs; true when it took the event (no status is announced for it). */
  onEvent(e: ChEvent): boolean;
}

export interface VmInit {
  readonly vmId: string;
  readonly paths: VmPaths;
  readonly config: VmConfig;
  readonly options: PluginOptions;
  readonly status: VmStatus;
  readonly agent: AgentVsock | undefined;
  readonly eventsOffset: number;
  readonly bdfs?: Record<string, string>;
  /** The memory size the VM booted with: virtio-mem cannot shrink below it. */
  readonly bootMemoryMiB: number;
  readonly deps: VmDeps;
}

export class ChVm extends ServedVm {
  readonly paths: VmPaths;
  readonly options: PluginOptions;
  readonly client: CloudHypervisorClient;
  readonly bdfs: Map<string, string>;
  bootMemoryMiB: number;
  config: VmConfig;
  agent: AgentVsock | undefined;
  vmm: VmmProcess | undefined;
  exit: ExitRecord | undefined;
  /** Devices removed through the API whose device-removed event the VMM has yet to write. */
  readonly pendingRemoval = new Set<string>();
  private readonly deps: VmDeps;
  private readonly tail: EventTail;
  private reading: Promise<number> = Promise.resolve(0);
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private expectingExit = false;
  private migration: MigrationWatch | undefined;
  /** The VM went to another VMM by live migration: the exit of this VMM that follows is neither a stop nor a crash. */
  private migratedAway = false;
  private sawVmmShutdown = false;
  private exitStarted = false;
  private exitDone: Promise<void>;
  private markExitDone: () => void = () => undefined;
  /** The state file writes, one after another: they share a temporary file, and the directory waits for them. */
  private writes: Promise<void> = Promise.resolve();
  /**
   * The state last handed to the host (an answer, a state event): its facts (all but the offset) and its offset.
   * A host that lost a later answer (it crashed) holds an earlier state, which does no harm: a catch-up from an
   * earlier offset reads more events again, and of those it applies only removals, never a status.
   */
  private handedOut: { facts: string; offset: number } | undefined;

  constructor(init: VmInit) {
    super(init.vmId, init.status, init.deps.emit);
    this.paths = init.paths;
    this.config = init.config;
    this.options = init.options;
    this.agent = init.agent;
    this.deps = init.deps;
    this.bdfs = new Map(Object.entries(init.bdfs ?? {}));
    this.bootMemoryMiB = init.bootMemoryMiB;
    this.client = new CloudHypervisorClient({ socketPath: init.paths.socket, timeoutMs: 30_000 });
    this.tail = new EventTail(init.paths.events, init.eventsOffset);
    this.exitDone = new Promise((r) => (this.markExitDone = r));
  }

  get log(): Logger {
    return this.deps.log;
  }

  /** The VMM process runs (as far as this process has seen). */
  get live(): boolean {
    return this.vmm !== undefined;
  }

  deviceAdded(device: Device): void {
    this.emit({ type: 'device-added', deviceId: device.id });
  }

  deviceRemoved(deviceId: string): void {
    this.emit({ type: 'device-removed', deviceId });
  }

  /**
   * Reads the events the VMM wrote since the last read and acts on them. `catch-up` (after vm/recover)
   * applies device removals but announces no status: vm.info has just said where the VM is.
   */
  sync(mode: 'live' | 'catch-up' = 'live'): Promise<number> {
    const next = this.reading.then(async () => {
      let count = 0;
      for (let more = true; more; ) {
        const read = await this.tail.read();
        for (const i of read.invalid) this.log.warn({ vmId: this.vmId, text: i.text.slice(0, 200), reason: i.reason }, 'unreadable event-monitor text');
        for (const e of read.events) this.onChEvent(e, mode);
        count += read.events.length;
        more = read.more;
      }
      return count;
    });
    this.reading = next.catch(() => 0);
    return next;
  }

  private onChEvent(e: ChEvent, mode: 'live' | 'catch-up'): void {
    this.log.debug({ vmId: this.vmId, source: e.source, event: e.event, properties: e.properties }, 'VMM event');
    if (e.source === 'vmm' && e.event === 'shutdown') this.sawVmmShutdown = true;
    if (e.source !== 'vm') return;
    if (e.event === 'device-removed') {
      const id = e.properties?.id;
      if (id !== undefined) this.onDeviceRemoved(id);
      return;
    }
    if (mode === 'catch-up') return;
    if (this.migration?.onEvent(e) === true) return;
    const type = announcedFor(e);
    if (type) this.announce(type);
  }

  private onDeviceRemoved(id: string): void {
    this.bdfs.delete(id);
    if (id === AGENT_VSOCK_ID) {
      this.agent = undefined;
      return;
    }
    const known = this.config.devices.some((d) => d.id === id);
    if (!known && !this.pendingRemoval.has(id)) return;
    this.pendingRemoval.delete(id);
    this.config = { ...this.config, devices: this.config.devices.filter((d) => d.id !== id) };
    this.deviceRemoved(id);
  }

  /** Routes the VMM's events to a migration while it runs (undefined: back to the VM's own statuses). */
  watchMigration(watch: MigrationWatch | undefined): void {
    this.migration = watch;
  }

  /** The VMM's migration worker has sent the VM away (migration-finished): its VMM now exits on its own. */
  migrated(): void {
    this.migratedAway = true;
  }

  /**
   * A VMM receiving a migration handles no API request until the stream is in (the control loop runs the
   * whole exchange): asking it to shut down would only wait.
   */
  get apiBlocked(): boolean {
    return this.migration?.role === 'incoming';
  }

  /** Reads events as the VMM writes them (inotify on the VM's directory, and a slow poll behind it) and watches for its exit. */
  attach(vmm: VmmProcess): void {
    this.vmm = vmm;
    this.startWatching();
    if (vmm.exited) {
      void vmm.exited.then((info) => this.onExit(info, 'child'));
    }
  }

  private startWatching(): void {
    if (this.poll || !this.vmm) return;
    const background = (): void => {
      // Until the call that brings the VM up has announced it, that call reads the events itself, in order.
      if (!this.hasAnnounced) return;
      void this.sync()
        .then((n) => {
          if (n > 0 && this.stale) this.stateChanged();
        })
        .catch((err: Error) => this.log.warn({ vmId: this.vmId, err: err.message }, 'cannot read the event monitor file'));
    };
    try {
      this.watcher = watch(this.paths.dir, (_kind, name) => {
        if (name === null || String(name).startsWith('events.json')) background();
      });
      this.watcher.on('error', () => this.watcher?.close());
    } catch (err) {
      this.log.debug({ vmId: this.vmId, err: (err as Error).message }, 'no inotify on the VM directory; polling only');
    }
    const vmm = this.vmm;
    this.poll = setInterval(() => {
      background();
      // A VMM this process did not start is not its child: only /proc tells that it is gone.
      if (!vmm.child && !proc.isRunning(vmm.pid, vmm.startTicks)) void this.onExit({ code: null, signal: null }, 'proc');
    }, POLL_MS);
    this.poll.unref();
  }

  /** Stops reading events and checking /proc; the VMM runs on. The next call on the VM attaches again. */
  detach(): void {
    clearInterval(this.poll);
    this.poll = undefined;
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** Makes sure events are followed again after vm/disconnect. */
  reattach(): void {
    if (this.vmm) this.startWatching();
  }

  private async onExit(info: ExitInfo, how: 'child' | 'proc'): Promise<void> {
    if (this.exitStarted) return;
    this.exitStarted = true;
    this.detach();
    // What the VMM wrote last (vm/shutdown, vmm/shutdown) comes before the exit it led to.
    await this.sync().catch(() => 0);
    this.vmm = undefined;
    if (this.migratedAway) {
      this.log.info({ vmId: this.vmId, code: info.code, signal: info.signal }, 'the VMM exited after sending the VM away');
      this.markExitDone();
      return;
    }
    const { status, reason } = exitVerdict(info, {
      requested: this.expectingExit,
      parent: how === 'child',
      sawVmmShutdown: this.sawVmmShutdown,
      status: this.status,
    });
    this.exit = { code: info.code, signal: info.signal, reason };
    this.log.info({ vmId: this.vmId, ...this.exit, status }, 'VMM exited');
    this.emit({ type: 'exited', code: info.code, signal: info.signal, reason });
    this.status = status;
    this.assumeAnnounced(status);
    if (status === 'crashed') this.emit({ type: 'crashed', reason });
    this.stateChanged();
    this.settleWaitersNow();
    this.markExitDone();
  }

  /**
   * What the VMM answers to a query, or undefined when the VMM died meanwhile. Between its death and this
   * process seeing its exit, its socket is still there and resets or refuses the connection; the call then
   * answers from the exit, as it would have a moment later, instead of failing with the dead socket's error.
   */
  async ask<T>(query: () => Promise<T>): Promise<T | undefined> {
    try {
      return await query();
    } catch (err) {
      if (!(err instanceof ChConnectionError) || !GONE.has(err.code) || !(await this.exited(EXIT_SEEN_MS))) throw err;
      return undefined;
    }
  }

  /** Resolves true once the VMM's exit has been handled (events emitted), false after `ms`. */
  async exited(ms: number): Promise<boolean> {
    if (!this.vmm && !this.exitStarted) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
    const done = this.exitDone.then(() => true);
    try {
      return await Promise.race([done, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Ends the VMM: vm.shutdown (unless forced or never booted), vmm.shutdown, and SIGKILL to its process
   * group if it is still there when the grace time is over. Returns once the exit has been handled.
   */
  async terminate(graceMs: number, force: boolean): Promise<void> {
    const vmm = this.vmm;
    if (!vmm) return;
    this.expectingExit = true;
    const deadline = Date.now() + graceMs;
    const left = (min: number): number => Math.max(min, deadline - Date.now());
    if (this.apiBlocked) {
      killVmm(vmm.pid, vmm.startTicks);
      if (await this.exited(5_000)) return;
      await this.onExit({ code: null, signal: 'SIGKILL' }, 'proc');
      return;
    }
    if (!force && (this.status === 'running' || this.status === 'paused')) {
      await this.client.shutdownVm({ timeoutMs: left(200) }).catch((err: Error) => this.log.warn({ vmId: this.vmId, err: err.message }, 'vm.shutdown failed'));
      await this.sync().catch(() => 0);
    }
    await this.client.shutdownVmm({ timeoutMs: Math.min(left(200), 5_000) }).catch((err: Error) => this.log.warn({ vmId: this.vmId, err: err.message }, 'vmm.shutdown failed'));
    if (await this.exited(left(1_000))) return;
    this.log.warn({ vmId: this.vmId, pid: vmm.pid }, 'the VMM did not exit in time: SIGKILL');
    killVmm(vmm.pid, vmm.startTicks);
    if (await this.exited(5_000)) return;
    // Killed, yet its exit not seen in 5 s: the VM is over all the same.
    await this.onExit({ code: null, signal: 'SIGKILL' }, 'proc');
  }

  /** vm/wait: resolves once the VMM is gone and the VM no longer runs. */
  wait(signal: AbortSignal): Promise<WaitResult> {
    // The protocol's state machine: a VM that has not booted is not waited on, though its VMM runs.
    if (this.status === 'created') return Promise.resolve({ status: 'created', exitCode: null, reason: 'the VM has not been started' });
    return this.waitFor(this.waitResult(), signal);
  }

  private waitResult(): WaitResult | undefined {
    if (this.vmm || !['stopped', 'crashed', 'lost'].includes(this.status)) return undefined;
    const reason = this.exit?.reason ?? (this.status === 'lost' ? 'the VMM is gone' : `the VM is ${this.status}`);
    return { status: this.status, exitCode: this.exit?.code ?? null, reason };
  }

  private settleWaitersNow(): void {
    const r = this.waitResult();
    if (r) this.settleWaiters(r);
  }

  /** The VM is deleted: nothing more is watched or announced, and vm/wait callers are answered. */
  override forget(): void {
    this.detach();
    if (!this.waitResult()) this.status = 'stopped';
    this.settleWaitersNow();
    super.forget();
  }

  /** The state blob as of now. A live VM's status is written `running` (stateStatus): vm/recover asks vm.info which. */
  state(): VmState {
    return {
      vmId: this.vmId,
      dir: this.paths.dir,
      eventsOffset: this.tail.offset,
      pid: this.vmm?.pid ?? null,
      startTicks: this.vmm?.startTicks ?? null,
      status: stateStatus(this.status),
      devices: this.config.devices,
      agent: this.agent ?? null,
      bdfs: Object.fromEntries(this.bdfs),
      bootMemoryMiB: this.bootMemoryMiB,
    };
  }

  /** The state for the host (every caller hands it over): remembered as the one its record holds. */
  stateJson(): Json {
    const state = this.state();
    this.handedOut = { facts: factsOf(state), offset: state.eventsOffset };
    return vmState.encode(state);
  }

  /**
   * The host's state is out of date: a fact changed since it was handed out (an event read: a device removed, the
   * guest shut down), or the events read ran CHECKPOINT_BYTES past its offset (or back: a new event file).
   */
  private get stale(): boolean {
    if (!this.handedOut) return true;
    const state = this.state();
    const ahead = state.eventsOffset - this.handedOut.offset;
    return factsOf(state) !== this.handedOut.facts || ahead < 0 || ahead > CHECKPOINT_BYTES;
  }

  /**
   * The answer of vm/pause and vm/resume: the status, which the host keeps volatile, and the state only when it is
   * stale. Neither call changes it (stateStatus), and the events they add need not move the host's offset: a
   * catch-up that reads them again announces no status (sync). So a pause or resume costs the host no durable
   * write of the VM's record, nor this plugin a write of its state file.
   */
  async statusResult(): Promise<VmResult> {
    if (!this.stale) return { status: this.status };
    await this.persist();
    return { status: this.status, state: this.stateJson() };
  }

  /** Saves the state next to the VM; failures are logged, the host's copy is the one that matters. */
  persist(): Promise<void> {
    this.writes = this.writes.then(async () => {
      if (this.gone) return;
      await writeStateFile(this.paths, this.state()).catch((err: Error) => this.log.warn({ vmId: this.vmId, err: err.message }, 'cannot write the VM state file'));
    });
    return this.writes;
  }

  /** Resolves when no state write is under way; after forget() none starts, so the directory can go. */
  settled(): Promise<void> {
    return this.writes;
  }

  /** Something changed outside any call (an event, the exit): the host gets the new state as an event. */
  private stateChanged(): void {
    void this.persist();
    this.emit({ type: 'state', state: this.stateJson() });
  }
}

/** A state but its events offset: what a catch-up cannot bring back. */
function factsOf(state: VmState): string {
  const { eventsOffset: _offset, ...facts } = state;
  return JSON.stringify(facts);
}
