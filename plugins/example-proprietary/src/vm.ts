// One simulated VM: the kit's ServedVm (status from the state machine, events, one call at a time, vm/wait) with
// its guest process, its devices and sizes, and the state blob a later plugin process takes it back with.
import { rm } from 'node:fs/promises';
import { errors, proc, ServedVm, stateStatus, type CallContext, type EventInput, type WaitResult } from 'hvplug/plugin-sdk';
import type { Device, ResultInputOf, VmConfig, VmStatus } from 'hvplug/protocol';
import { deviceIssues, hotpluggable, probeDevice } from './devices.js';
import { invalidParams } from './errors.js';
import { Guest, type ExitInfo } from './guest.js';
import { readConsole } from './guest-program.js';
import { endStrayGuests, isRunning, liveState, stoppedState, writeGuestRecord, type ProcessIdentity } from './guest-record.js';
import type { GuestSettings } from './settings.js';
import { MIGRATION_FORMAT, sendMigration, type MigrationStream } from './migration.js';
import { writeSnapshot, SNAPSHOT_FORMAT, SNAPSHOT_VERSION } from './snapshot.js';
import { vmState, type ExitRecord, type VmState } from './state.js';

type VmResult = ResultInputOf<'vm/start'>;

const LIVE: readonly VmStatus[] = ['running', 'paused'];
const BOOT_TIMEOUT_MS = 30_000;
/** vm/delete stops a running guest first, gracefully but briefly. */
const DELETE_GRACE_MS = 2_000;

export interface VmInit {
  vmId: string;
  config: VmConfig;
  settings: GuestSettings;
  dir: string;
  consolePath: string;
  agentSocketPath: string;
  emit: (event: EventInput) => void;
  status: VmStatus;
  vcpus: number;
  memoryMiB: number;
  devices: Device[];
  lastExit: ExitRecord | null;
}

function describeExit(info: ExitInfo, requested: boolean): string {
  const how =
    info.signal !== null
      ? `killed by ${info.signal}`
      : info.code !== null
        ? info.code === 0
          ? 'powered off'
          : `exited with code ${info.code}`
        : 'vanished without powering off (it was not our child: how it ended is unknown)';
  return requested ? `stopped on request: ${how}` : `the guest ${how}`;
}

/** One simulated VM: its guest process, its devices, its sizes. */
export class SimVm extends ServedVm {
  readonly dir: string;
  readonly consolePath: string;
  readonly agentSocketPath: string;
  readonly config: VmConfig;
  readonly settings: GuestSettings;
  private vcpus: number;
  private memoryMiB: number;
  private devices: Device[];
  private lastExit: ExitRecord | null;
  /** The watched guest; undefined when there is none, or after vm/disconnect. */
  private guest: Guest | undefined;
  /** The guest's identity, kept across vm/disconnect to take it back. */
  private identity: ProcessIdentity | undefined;
  private stopping = false;
  private exitHandled: Promise<void> = Promise.resolve();

  constructor(init: VmInit) {
    super(init.vmId, init.status, init.emit);
    this.dir = init.dir;
    this.consolePath = init.consolePath;
    this.agentSocketPath = init.agentSocketPath;
    this.config = init.config;
    this.settings = init.settings;
    this.vcpus = init.vcpus;
    this.memoryMiB = init.memoryMiB;
    this.devices = init.devices;
    this.lastExit = init.lastExit;
  }

  // ---- state ----

  /** A live VM's status is written `running` (stateStatus): recoverGuest reads from /proc whether it is paused. */
  state(): VmState {
    return {
      status: stateStatus(this.status),
      guest: this.identity ?? null,
      dir: this.dir,
      consolePath: this.consolePath,
      agentSocketPath: this.agentSocketPath,
      vcpus: this.vcpus,
      memoryMiB: this.memoryMiB,
      devices: this.devices,
      lastExit: this.lastExit,
    };
  }

  result(): VmResult {
    return { status: this.status, state: vmState.encode(this.state()) };
  }

  /** Tells the host the state changed outside a call that answers with it. */
  private emitState(): void {
    this.emit({ type: 'state', state: vmState.encode(this.state()) });
  }

  /** Calls that change the VM run one at a time (a call cancelled while it waits never runs), and not at all once it is deleted. */
  private call<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.exclusive(async () => {
      if (this.gone) throw errors.vmNotFound(this.vmId);
      return task();
    }, signal);
  }

  // ---- the guest process ----

  private adopt(guest: Guest): void {
    this.guest = guest;
    this.identity = guest.identity;
    this.exitHandled = guest.exited.then((info) => this.onExit(guest, info));
  }

  /** The guest ended: say how, and what the VM's status is now. */
  private onExit(guest: Guest, info: ExitInfo): void {
    if (this.guest !== guest) return;
    this.guest = undefined;
    this.identity = undefined;
    const requested = this.stopping;
    // Anything but a clean power-off that nobody asked for is a crash of the VM.
    const crashed = !requested && info.code !== 0;
    const reason = describeExit(info, requested);
    this.lastExit = { code: info.code, signal: info.signal, reason };
    this.status = crashed ? 'crashed' : 'stopped';
    // Told here with their details, in the order the state machine wants: later announcements are relative to it.
    this.emit({ type: 'exited', code: info.code, signal: info.signal, reason });
    if (crashed) this.emit({ type: 'crashed', reason });
    else if (requested) this.emit({ type: 'stopped' });
    this.assumeAnnounced(this.status);
    if (!requested) this.emitState();
    this.settleWaiters(this.waitResult());
  }

  /** After vm/disconnect nobody watches the guest: a call that needs it takes it back first. */
  async reconnect(): Promise<void> {
    if (this.guest || !this.identity) return;
    const guest = Guest.attach(this.identity, this.consolePath);
    this.adopt(guest);
    if (!guest.alive) await this.exitHandled;
  }

  /**
   * Re-attaches to the guest of a state from another plugin process, or to the one its runtime
   * directory names when the state is older than the guest. `lost` when the state had a guest and it is
   * gone without a clean power-off on its console (then: stopped); the status of a found guest is what /proc says (stopped by SIGSTOP: paused).
   */
  async recoverGuest(fromState: ProcessIdentity | null, fromDir: () => Promise<ProcessIdentity | undefined>): Promise<void> {
    // One look at /proc per candidate; the guest record is read only when the state's guest is gone.
    let identity: ProcessIdentity | null | undefined = fromState;
    let state = identity ? liveState(identity) : undefined;
    if (state === undefined) {
      identity = await fromDir();
      state = identity ? liveState(identity) : undefined;
    }
    if (identity && state !== undefined) {
      this.adopt(Guest.attach(identity, this.consolePath, true));
      this.status = stoppedState(state) ? 'paused' : 'running';
    } else if (LIVE.includes(this.status) || fromState) {
      // Gone while no plugin process watched it. A clean power-off as its console's last word (a vm/stop whose
      // answer never reached the host, or the guest's own shutdown) leaves it stopped, as a watched guest would
      // be; anything else is unknowable from here.
      const off = (await readConsole(this.consolePath)).powerOff;
      if (off?.code === 0) {
        this.status = 'stopped';
        this.lastExit = { code: 0, signal: null, reason: 'the guest powered off while no plugin process watched it' };
      } else {
        this.status = 'lost';
      }
    }
  }

  private liveGuest(allowed: readonly VmStatus[]): Guest {
    this.require(allowed);
    if (!this.guest) throw errors.vmmFailure(`VM ${this.vmId} is ${this.status} but has no guest process`);
    return this.guest;
  }

  private async launch(nextTick: number, paused: boolean, signal: AbortSignal): Promise<Guest> {
    // Called only for a VM without a live guest: any guest of it that /proc shows is a leftover.
    await endStrayGuests(this.agentSocketPath);
    const guest = await Guest.spawn(
      {
        vmId: this.vmId,
        nextTick,
        tickMs: this.settings.tickMs,
        powerOffAfterTicks: this.settings.powerOffAfterTicks,
        agentSocketPath: this.agentSocketPath,
        startPaused: paused,
        threads: this.config.vcpus.max ?? this.config.vcpus.boot,
      },
      this.consolePath,
    );
    try {
      await writeGuestRecord(this.dir, guest.identity);
      await guest.booted(signal, BOOT_TIMEOUT_MS, paused);
    } catch (err) {
      await guest.terminate(0).catch(() => undefined);
      throw err;
    }
    return guest;
  }

  // ---- lifecycle ----

  start(ctx: CallContext): Promise<VmResult> {
    return this.call(async () => {
      this.require(['created', 'stopped', 'crashed']);
      ctx.progress('attaching devices', 5);
      for (const d of this.devices) await probeDevice(d);
      ctx.progress('starting the guest process', 20);
      let guest: Guest;
      try {
        guest = await this.launch(0, false, ctx.signal);
      } catch (err) {
        throw ctx.signal.aborted ? errors.cancelled('vm/start') : err;
      }
      this.adopt(guest);
      this.announce('running');
      ctx.progress('the guest has booted', 100);
      return this.result();
    }, ctx.signal);
  }

  /** vm/restore's second half: the guest carries on from the snapshot's counter, stopped. */
  async startRestored(nextTick: number, ctx: CallContext): Promise<VmResult> {
    return this.call(async () => {
      for (const d of this.devices) await probeDevice(d);
      ctx.progress('starting the guest process', 40);
      let guest: Guest;
      try {
        guest = await this.launch(nextTick, true, ctx.signal);
      } catch (err) {
        throw ctx.signal.aborted ? errors.cancelled('vm/restore') : err;
      }
      this.adopt(guest);
      this.announce('created');
      this.announce('paused');
      ctx.progress('restored, paused', 100);
      return this.result();
    }, ctx.signal);
  }

  /** vm/receiveMigration's second half: the guest carries on, running, from the counter and size that came in. */
  startIncoming(stream: MigrationStream): Promise<void> {
    return this.call(async () => {
      this.require(['created']);
      this.vcpus = stream.vcpus;
      this.memoryMiB = stream.memoryMiB;
      this.devices = stream.devices;
      for (const d of this.devices) await probeDevice(d);
      this.adopt(await this.launch(stream.nextTick, false, AbortSignal.timeout(BOOT_TIMEOUT_MS)));
      this.announce('running');
      this.emitState();
    });
  }

  /**
   * vm/migrate: the guest is stopped (SIGSTOP), its counter read from its console and sent; once the destination
   * says its guest runs, this one is ended and the VM forgotten. Any failure before that continues the guest here.
   * A paused VM is refused (the table leaves it to the plugin): its destination would have to come up paused.
   */
  migrate(uri: string, ctx: CallContext): Promise<ResultInputOf<'vm/migrate'>> {
    return this.call(async () => {
      await this.reconnect();
      const guest = this.liveGuest(['running']);
      const began = proc.monotonicMs();
      ctx.progress('stopping the guest for the hand-off', 10);
      await guest.pause();
      const stopped = proc.monotonicMs();
      let transferredBytes: number;
      try {
        const reading = await readConsole(this.consolePath, guest.consoleOffset);
        ctx.progress('sending the guest state', 50);
        transferredBytes = await sendMigration(
          uri,
          { format: MIGRATION_FORMAT, vmId: this.vmId, nextTick: reading.nextTick ?? 0, vcpus: this.vcpus, memoryMiB: this.memoryMiB, devices: this.devices },
          ctx.signal,
        );
      } catch (err) {
        await guest.resume().catch(() => undefined);
        throw err;
      }
      const downtimeMs = proc.monotonicMs() - stopped;
      // Nothing more about this VM reaches the host: it is the destination's now.
      this.forget();
      this.stopping = true;
      try {
        await guest.terminate(0);
        await this.exitHandled;
      } finally {
        this.stopping = false;
      }
      await endStrayGuests(this.agentSocketPath);
      await rm(this.dir, { recursive: true, force: true });
      this.settleWaiters({ status: this.status, exitCode: null, reason: 'the VM migrated away' });
      ctx.progress('the guest runs at the destination', 100);
      return { downtimeMs, totalMs: proc.monotonicMs() - began, transferredBytes };
    }, ctx.signal);
  }

  stop(force: boolean, graceMs: number, signal: AbortSignal): Promise<VmResult> {
    return this.call(async () => {
      await this.reconnect();
      // Stopping what is not running any more asks for nothing to be done.
      if (this.status === 'stopped' || this.status === 'crashed') return this.result();
      const guest = this.liveGuest(LIVE);
      this.stopping = true;
      try {
        await guest.terminate(force ? 0 : graceMs, signal);
        await this.exitHandled;
      } finally {
        this.stopping = false;
      }
      return this.result();
    }, signal);
  }

  pause(signal: AbortSignal): Promise<VmResult> {
    return this.call(async () => {
      await this.reconnect();
      await this.liveGuest(['running']).pause();
      this.announce('paused');
      return this.result();
    }, signal);
  }

  resume(signal: AbortSignal): Promise<VmResult> {
    return this.call(async () => {
      await this.reconnect();
      await this.liveGuest(['paused']).resume();
      this.announce('resumed');
      return this.result();
    }, signal);
  }

  /** Resolves once the guest no longer runs; a VM that does not run answers at once. */
  async wait(signal: AbortSignal): Promise<WaitResult> {
    await this.reconnect();
    return this.waitFor(LIVE.includes(this.status) ? undefined : this.waitResult(), signal);
  }

  private waitResult(): WaitResult {
    return {
      status: this.status,
      exitCode: this.lastExit?.code ?? null,
      reason: this.gone ? 'the VM was deleted' : (this.lastExit?.reason ?? `the VM is ${this.status}`),
    };
  }

  save(path: string, ctx: CallContext): Promise<ResultInputOf<'vm/save'>> {
    return this.call(async () => {
      await this.reconnect();
      const guest = this.liveGuest(['paused']);
      ctx.progress('reading the guest state', 10);
      const reading = await readConsole(this.consolePath, guest.consoleOffset);
      ctx.progress('writing the snapshot', 50);
      const sizeBytes = await writeSnapshot(path, {
        format: SNAPSHOT_FORMAT,
        version: SNAPSHOT_VERSION,
        vmId: this.vmId,
        savedAt: new Date().toISOString(),
        config: { ...this.config, devices: this.devices },
        vcpus: this.vcpus,
        memoryMiB: this.memoryMiB,
        nextTick: reading.nextTick ?? 0,
      });
      ctx.progress('saved', 100);
      return { path, sizeBytes, state: vmState.encode(this.state()) };
    }, ctx.signal);
  }

  /** Stops the guest if it runs and releases the runtime directory. */
  delete(): Promise<void> {
    return this.call(async () => {
      await this.reconnect();
      if (this.guest) {
        this.stopping = true;
        try {
          await this.guest.terminate(DELETE_GRACE_MS);
          await this.exitHandled;
        } finally {
          this.stopping = false;
        }
      }
      this.forget();
      this.guest?.detach();
      await endStrayGuests(this.agentSocketPath);
      await rm(this.dir, { recursive: true, force: true });
      this.settleWaiters(this.waitResult());
    });
  }

  disconnect(): Promise<void> {
    return this.call(async () => {
      this.guest?.detach();
      this.guest = undefined;
    });
  }

  /**
   * Stops watching without touching the guest: the plugin process is going away, or (listening) its host is. The
   * guest handle goes too: a detached one hears nothing of the guest's end, and the next host's vm/recover must
   * watch the guest afresh (reconnect), not find the deaf handle and keep it.
   */
  release(): void {
    this.guest?.detach();
    this.guest = undefined;
  }

  // ---- devices and sizes ----

  private requireHotplug(method: string): void {
    if (LIVE.includes(this.status) && !hotpluggable(this.config.machine)) {
      throw errors.notSupported(method, `machine ${this.config.machine} has no hotplug`);
    }
  }

  addDevice(device: Device): Promise<ResultInputOf<'device/add'>> {
    return this.call(async () => {
      await this.reconnect();
      this.require(['created', 'running', 'paused', 'stopped']);
      if (this.devices.some((d) => d.id === device.id)) throw errors.alreadyExists(device.id);
      this.requireHotplug('device/add');
      const issues = deviceIssues(device, ['device']);
      if (issues.length) throw errors.invalidParams('device/add', issues);
      await probeDevice(device);
      this.devices = [...this.devices, device];
      this.emit({ type: 'device-added', deviceId: device.id });
      return { deviceId: device.id, state: vmState.encode(this.state()) };
    });
  }

  removeDevice(deviceId: string): Promise<ResultInputOf<'device/remove'>> {
    return this.call(async () => {
      await this.reconnect();
      this.require(['created', 'running', 'paused', 'stopped']);
      if (!this.devices.some((d) => d.id === deviceId)) throw errors.deviceNotFound('device/remove', this.vmId, deviceId);
      this.requireHotplug('device/remove');
      this.devices = this.devices.filter((d) => d.id !== deviceId);
      this.emit({ type: 'device-removed', deviceId });
      return { state: vmState.encode(this.state()) };
    });
  }

  resizeVcpus(count: number): Promise<ResultInputOf<'vm/resizeVcpus'>> {
    return this.call(async () => {
      await this.reconnect();
      this.require(['created', 'running', 'paused']);
      const max = this.config.vcpus.max ?? this.config.vcpus.boot;
      if (count > max) throw invalidParams('vm/resizeVcpus', ['count'], `VM ${this.vmId} has at most ${max} vCPUs (vcpus.max)`);
      if (count !== this.vcpus) this.requireHotplug('vm/resizeVcpus');
      this.vcpus = count;
      this.emitState();
      return { vcpus: count };
    });
  }

  resizeMemory(sizeMiB: number): Promise<ResultInputOf<'vm/resizeMemory'>> {
    return this.call(async () => {
      await this.reconnect();
      this.require(['created', 'running', 'paused']);
      const max = this.config.memory.maxMiB ?? this.config.memory.sizeMiB;
      if (sizeMiB > max) throw invalidParams('vm/resizeMemory', ['sizeMiB'], `VM ${this.vmId} has at most ${max} MiB (memory.maxMiB)`);
      if (sizeMiB !== this.memoryMiB) this.requireHotplug('vm/resizeMemory');
      this.memoryMiB = sizeMiB;
      this.emitState();
      return { memoryMiB: sizeMiB };
    });
  }

  // ---- what queries read ----

  /** The guest's pid while its process exists, watched or not (after vm/disconnect). */
  guestPid(): number | undefined {
    return this.identity && isRunning(this.identity) ? this.identity.pid : undefined;
  }

  get watched(): boolean {
    return this.guest !== undefined;
  }

  /** Where the running guest's console output starts (0: unknown, read the tail). */
  get consoleOffset(): number {
    return this.guest?.consoleOffset ?? 0;
  }

  get hardware(): { vcpus: number; memoryMiB: number; devices: readonly Device[] } {
    return { vcpus: this.vcpus, memoryMiB: this.memoryMiB, devices: this.devices };
  }

  get exit(): ExitRecord | null {
    return this.lastExit;
  }

  usesFile(path: string): boolean {
    return this.devices.some((d) => d.type === 'block' && d.path === path);
  }
}
