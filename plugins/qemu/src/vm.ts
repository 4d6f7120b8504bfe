// One QEMU VM: its lifecycle over QMP, its devices, and the state the host keeps for it. Calls that
// change the VM run one at a time (a queue), so a stop never races a hotplug; queries do not queue.
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PluginError, Waiters, errors, type CallContext, type EventInput, type WaitResult } from 'hvplug/plugin-sdk';
import type { Device, VmConfig, VmResult, VmStatus } from 'hvplug/protocol';
import { buildQemuArgs, rootPortId, type QemuLaunchConfig } from './cmdline.js';
import { backendCleanup, deviceIdOf, qemuDeviceId, qemuParts, supportOf, type Attached, type QemuParts } from './devices.js';
import { toPluginError, vmmCall } from './failures.js';
import { attachQemu, isProcessAlive, killProcessGroup, PIDFILE, QMP_SOCKET, qemuOfPidfile, quitQemu, startQemu, type QemuExit, type QemuInstance } from './process.js';
import { QmpCommandError, type QmpEvent } from './qmp.js';
import { loadFromFile, migrateToFile, writeSidecar, type Snapshot } from './snapshot.js';
import { vmState, type Json, type LaunchInfo, type VmState } from './state.js';

type Emit = (event: EventInput) => void;
type VmEventInput = EventInput extends infer E ? (E extends EventInput ? Omit<E, 'vmId'> : never) : never;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * device_del and the ACPI power button only ask the guest, and a guest still booting (its hotplug driver,
 * its /init not up yet) never answers such a request, while it answers a repeat once it is up. QEMU
 * refuses a repeated device_del for 5 s after each.
 */
const UNPLUG_REPEAT_MS = 6_000;
const UNPLUG_TIMEOUT_MS = 30_000;
const POWER_BUTTON_REPEAT_MS = 2_000;

/** Waits for `outcome`, asking the guest `again` every `everyMs` meanwhile; a failed repeat changes nothing. */
async function askingAgain<T>(outcome: Promise<T>, everyMs: number, again: () => Promise<unknown>): Promise<T> {
  const repeat = setInterval(() => void again().catch(() => undefined), everyMs);
  try {
    return await outcome;
  } finally {
    clearInterval(repeat);
  }
}

/** device_del until QEMU reports DEVICE_DELETED (the device is gone), the deadline passes or `signal` aborts. */
async function unplug(inst: QemuInstance, qid: string, signal?: AbortSignal): Promise<void> {
  const deleted = inst.qmp.waitForEvent('DEVICE_DELETED', { predicate: (e) => e.data.device === qid, timeoutMs: UNPLUG_TIMEOUT_MS, signal });
  deleted.catch(() => undefined);
  const ask = async (): Promise<void> => {
    try {
      await inst.qmp.execute('device_del', { id: qid }, { timeoutMs: 10_000 });
    } catch (e) {
      // Asked before (a repeat, or a call that gave up) and still pending: that request stands.
      if (!(e instanceof QmpCommandError && /already in the process of unplug/.test(e.desc))) throw toPluginError(e);
    }
  };
  await ask();
  // The wait for DEVICE_DELETED decides, and fails on its own.
  await askingAgain(deleted, UNPLUG_REPEAT_MS, ask);
}

export class QemuVm {
  private inst: QemuInstance | undefined;
  private exitHandled: Promise<void> = Promise.resolve();
  private stopRequested = false;
  private shutdownReason: string | undefined;
  private readonly waiters = new Waiters<WaitResult>();
  private queue: Promise<unknown> = Promise.resolve();
  private autoIds = 0;
  /** Backend cleanups of devices the guest let go, by device id, until they are done. */
  private readonly backendsDropped = new Map<string, Promise<void>>();

  constructor(
    readonly id: string,
    private config: VmConfig,
    private s: VmState,
    private readonly emitEvent: Emit,
  ) {}

  static initialState(runDir: string, launch: LaunchInfo, attached: Attached[]): VmState {
    return {
      status: 'created',
      runDir,
      qmpSocket: QMP_SOCKET,
      consoleLog: join(runDir, 'console.log'),
      pid: null,
      launch,
      vcpus: launch.vcpusBoot,
      memoryMiB: launch.memory.sizeMiB,
      attached,
      startedAt: null,
      lastExit: null,
    };
  }

  get status(): VmStatus {
    return this.s.status;
  }
  get state(): VmState {
    return this.s;
  }
  get pid(): number | null {
    return this.s.pid;
  }
  /** How many vm/wait calls wait for this VM's end. */
  get waiting(): number {
    return this.waiters.size;
  }

  result(): VmResult {
    return { status: this.s.status, state: vmState.encode(this.s) };
  }

  emit(event: VmEventInput): void {
    this.emitEvent({ ...event, vmId: this.id } as EventInput);
  }

  private emitState(): void {
    this.emit({ type: 'state', state: vmState.encode(this.s) });
  }

  /** Sets the status and tells the host, once: a QMP event and the call's answer may both report it. */
  private transition(status: VmStatus, event: 'running' | 'paused' | 'resumed'): void {
    if (this.s.status === status) return;
    this.s.status = status;
    this.emit({ type: event });
  }

  private require(allowed: readonly VmStatus[]): void {
    if (!allowed.includes(this.s.status)) throw errors.invalidState(this.id, this.s.status, allowed);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  currentConfig(): VmConfig {
    return { ...this.config, devices: this.s.attached.map((a) => a.device) };
  }

  // ---- QEMU process ----

  launchConfig(extra: { paused?: boolean; incoming?: 'defer' }): QemuLaunchConfig {
    const l = this.s.launch;
    const cold: QemuParts = { objects: [], blockdevs: [], netdevs: [], devices: [] };
    for (const a of this.s.attached) {
      cold.objects.push(...a.parts.objects);
      cold.blockdevs.push(...a.parts.blockdevs);
      cold.netdevs.push(...a.parts.netdevs);
      cold.devices.push(...a.parts.devices);
    }
    return {
      name: this.id,
      machine: l.machine,
      accel: l.accel,
      cpuModel: l.cpuModel,
      kernel: l.kernel,
      initrd: l.initrd,
      cmdline: l.cmdline,
      vcpus: { boot: l.vcpusBoot, max: l.vcpusMax },
      memory: l.memory,
      qmpSocket: this.s.qmpSocket,
      console: { kind: 'log', logFile: this.s.consoleLog },
      pidfile: PIDFILE,
      hotplugRootPorts: l.machine === 'q35' ? l.hotplugRootPorts : undefined,
      coldPlug: cold,
      extraArgs: l.extraArgs,
      // The plugin may be gone when the guest powers off (a detached VM): QEMU then waits in the shutdown
      // runstate for the next plugin to see it, instead of exiting unseen and being taken for lost.
      noShutdown: true,
      ...extra,
    };
  }

  private async launch(extra: { paused?: boolean; incoming?: 'defer' }, signal: AbortSignal): Promise<QemuInstance> {
    const args = buildQemuArgs(this.launchConfig(extra));
    const inst = await vmmCall(() => startQemu({ args, runDir: this.s.runDir, qmpSocket: this.s.qmpSocket, signal }));
    this.adopt(inst);
    this.s.startedAt = Date.now();
    return inst;
  }

  /** Takes `inst` as this VM's QEMU: its events and its exit now drive the VM's status. */
  private adopt(inst: QemuInstance): void {
    this.inst = inst;
    this.s.pid = inst.pid;
    this.stopRequested = false;
    this.shutdownReason = undefined;
    inst.qmp.on('event', (ev) => this.onQmpEvent(ev));
    this.exitHandled = inst.exited.then((exit) => this.onExit(inst, exit));
  }

  private onQmpEvent(ev: QmpEvent): void {
    switch (ev.event) {
      case 'STOP':
        if (this.s.status === 'running') this.transition('paused', 'paused');
        return;
      case 'RESUME':
        if (this.s.status === 'paused') this.transition('running', 'resumed');
        return;
      case 'SHUTDOWN': {
        const reason = typeof ev.data.reason === 'string' ? ev.data.reason : 'shutdown';
        // The quit that follows a guest's power-off (see below) says host-qmp-quit; the guest's reason stands.
        this.shutdownReason ??= reason;
        // Under -no-shutdown QEMU outlives its guest; a quit we sent (or a signal) ends it already.
        if (reason !== 'host-qmp-quit' && reason !== 'host-signal') this.quitAfterShutdown();
        return;
      }
      case 'DEVICE_DELETED': {
        const id = typeof ev.data.device === 'string' ? deviceIdOf(ev.data.device) : undefined;
        const at = this.s.attached.findIndex((a) => a.device.id === id);
        if (id === undefined || at < 0) return;
        const [rec] = this.s.attached.splice(at, 1);
        if (rec) this.dropBackends(id, rec.parts);
        this.emit({ type: 'device-removed', deviceId: id });
        this.emitState();
        return;
      }
      default:
        return;
    }
  }

  private onExit(inst: QemuInstance, exit: QemuExit): void {
    if (this.inst !== inst) return;
    inst.detach();
    this.inst = undefined;
    this.s.pid = null;
    const how = exit.signal ? `signal ${exit.signal}` : exit.code === null ? 'an unknown status (re-attached)' : `code ${exit.code}`;
    // Without a stop request or a guest shutdown seen over QMP, any end is a crash; a re-attached
    // QEMU's exit status is unknowable (not our child), which counts as abnormal too.
    const crashed = !this.stopRequested && this.shutdownReason === undefined && (exit.signal !== null || exit.code !== 0);
    const reason = this.stopRequested
      ? 'stopped by vm/stop'
      : this.shutdownReason !== undefined
        ? `guest shutdown (${this.shutdownReason})`
        : `QEMU exited with ${how}`;
    this.s.lastExit = { code: exit.code, signal: exit.signal, reason };
    this.s.status = crashed ? 'crashed' : 'stopped';
    this.s.vcpus = this.s.launch.vcpusBoot;
    this.emit({ type: 'exited', code: exit.code, signal: exit.signal, reason });
    if (crashed) this.emit({ type: 'crashed', reason });
    this.emitState();
    this.waiters.settle(this.waitResult());
  }

  /** The live QEMU, re-attaching through QMP after vm/disconnect. */
  private async control(): Promise<QemuInstance> {
    if (this.inst) return this.inst;
    const pid = this.s.pid;
    if (pid === null || !isProcessAlive(pid)) throw errors.invalidState(this.id, this.s.status, ['running', 'paused']);
    const inst = await vmmCall(() => attachQemu({ pid, runDir: this.s.runDir, qmpSocket: this.s.qmpSocket }));
    this.adopt(inst);
    return inst;
  }

  /** Deletes a gone device's netdevs, block nodes and objects; a device/remove waiting for it awaits this too. */
  private dropBackends(deviceId: string, parts: QemuParts): void {
    const dropping = (async () => {
      for (const c of backendCleanup(parts)) await this.qmp(c.command, c.args);
    })();
    this.backendsDropped.set(deviceId, dropping);
    dropping.catch(() => undefined).finally(() => {
      if (this.backendsDropped.get(deviceId) === dropping) this.backendsDropped.delete(deviceId);
    });
  }

  private async qmp(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<unknown> {
    const inst = await this.control();
    return vmmCall(() => inst.qmp.execute(command, args, { timeoutMs }));
  }

  /** The guest is gone and QEMU (under -no-shutdown) waits: end it, so its exit reports the VM stopped. */
  private quitAfterShutdown(): void {
    const inst = this.inst;
    if (!inst) return;
    inst.qmp.execute('quit').catch(() => {
      // Already ending, or the monitor is gone: the exit watcher reports the VM either way.
    });
  }

  /** vm/recover: attach to the QEMU of an earlier plugin process; gone means lost. */
  async reattach(): Promise<void> {
    const pid = this.s.pid;
    if (pid === null) return this.reclaimUnrecorded();
    try {
      const inst = await attachQemu({ pid, runDir: this.s.runDir, qmpSocket: this.s.qmpSocket });
      this.adopt(inst);
      const st = (await inst.qmp.execute('query-status')) as { status: string; running: boolean };
      this.s.status = st.running ? 'running' : 'paused';
      if (st.status === 'shutdown') {
        // The guest powered off while no plugin watched (QEMU runs with -no-shutdown): the VM ended as a
        // guest power-off does, and is answered stopped once QEMU is gone.
        this.shutdownReason = 'while no plugin was attached';
        this.quitAfterShutdown();
        await this.exitHandled;
      }
    } catch (e) {
      this.s.pid = null;
      this.s.status = 'lost';
      this.s.lastExit = { code: null, signal: null, reason: `QEMU could not be re-attached: ${e instanceof Error ? e.message : String(e)}` };
    }
  }

  /**
   * A QEMU whose pid the state never got: a vm/start or vm/restore cut short (plugin or host killed) after it
   * spawned QEMU and before its answer was recorded. Left alone it would run on unowned, and vm/delete would
   * never end it. One that got as far as running the guest (or holding a loaded snapshot) is this VM's QEMU
   * now, as the call meant; one still waiting for `cont` or for its snapshot is ended, and the VM stays as its
   * state says: the call did not happen.
   */
  private async reclaimUnrecorded(): Promise<void> {
    const pid = await qemuOfPidfile(this.s.runDir, this.s.qmpSocket);
    if (pid === undefined) return;
    let inst: QemuInstance;
    try {
      inst = await attachQemu({ pid, runDir: this.s.runDir, qmpSocket: this.s.qmpSocket });
    } catch {
      await killProcessGroup(pid, { graceMs: 1_000 });
      return;
    }
    const st = (await inst.qmp.execute('query-status').catch(() => undefined)) as { status: string; running: boolean } | undefined;
    if (st !== undefined && (st.running || st.status === 'paused')) {
      this.adopt(inst);
      this.s.status = st.running ? 'running' : 'paused';
      this.s.startedAt ??= Date.now();
      return;
    }
    await quitQemu(inst, { timeoutMs: 3_000 });
  }

  /** vm/delete's last step: a QEMU of this VM that the state does not name (see reclaimUnrecorded) ends too. */
  async endUnrecorded(): Promise<void> {
    const pid = await qemuOfPidfile(this.s.runDir, this.s.qmpSocket);
    if (pid !== undefined && pid !== this.inst?.pid) await killProcessGroup(pid, { graceMs: 1_000 });
  }

  // ---- lifecycle ----

  start(ctx: CallContext): Promise<VmResult> {
    return this.serial(async () => {
      this.require(['created', 'stopped', 'crashed']);
      ctx.progress('launching QEMU (vCPUs stopped)', 10);
      const inst = await this.launch({ paused: true }, ctx.signal);
      ctx.progress('QMP connected; starting the vCPUs', 80);
      this.s.vcpus = this.s.launch.vcpusBoot;
      // The status stays what it was until `cont` answers, so the RESUME event it causes is not
      // reported as a resume: the host hears 'running'.
      await vmmCall(() => inst.qmp.execute('cont'));
      this.transition('running', 'running');
      this.emitState();
      ctx.progress('running', 100);
      return this.result();
    });
  }

  stop(force: boolean, graceMs: number): Promise<VmResult> {
    return this.serial(async () => {
      if (this.s.status !== 'running' && this.s.status !== 'paused') return this.result();
      const inst = await this.control().catch(() => undefined);
      if (!inst) return this.result();
      this.stopRequested = true;
      // ACPI power button: a guest that listens shuts down cleanly within the grace period; pressed again
      // while it runs (see askingAgain). A paused guest cannot answer it, so there is nothing to wait for.
      if (!force && graceMs > 0 && this.s.status === 'running') {
        const press = (): Promise<boolean> => inst.qmp.execute('system_powerdown').then(() => true, () => false);
        if (await press()) await askingAgain(Promise.race([inst.exited, sleep(graceMs)]), POWER_BUTTON_REPEAT_MS, press);
      }
      if (isProcessAlive(inst.pid)) await quitQemu(inst, { timeoutMs: 3_000 });
      // A re-attached QEMU is watched by polling, which quitQemu's detach ends: once the process is
      // gone, the exit is recorded here if the watcher did not see it first.
      await Promise.race([this.exitHandled, sleep(500)]);
      if (this.inst === inst && !isProcessAlive(inst.pid)) this.onExit(inst, { code: null, signal: null });
      return this.result();
    });
  }

  pause(): Promise<VmResult> {
    return this.serial(async () => {
      this.require(['running']);
      await this.qmp('stop');
      this.transition('paused', 'paused');
      this.emitState();
      return this.result();
    });
  }

  resume(): Promise<VmResult> {
    return this.serial(async () => {
      this.require(['paused']);
      await this.qmp('cont');
      this.transition('running', 'resumed');
      this.emitState();
      return this.result();
    });
  }

  wait(signal: AbortSignal): Promise<WaitResult> {
    const over = this.s.status !== 'running' && this.s.status !== 'paused';
    return this.waiters.wait(over ? this.waitResult() : undefined, signal);
  }

  private waitResult(): WaitResult {
    return { status: this.s.status, exitCode: this.s.lastExit?.code ?? null, reason: this.s.lastExit?.reason ?? `VM is ${this.s.status}` };
  }

  /** Stops QEMU at once (used by vm/delete). */
  async destroy(): Promise<void> {
    await this.stop(true, 0);
    this.inst?.detach();
  }

  /** vm/shutdown of the plugin: let go of QMP, keep QEMU running. */
  release(): void {
    this.inst?.detach();
    this.inst = undefined;
  }

  // ---- snapshots ----

  save(path: string, ctx: CallContext): Promise<{ path: string; sizeBytes: number; state: Json }> {
    return this.serial(async () => {
      // The protocol saves paused VMs only, so the caller decides when the guest stops running.
      this.require(['paused']);
      ctx.progress('writing the snapshot', 10);
      await migrateToFile((await this.control()).qmp, path, ctx.signal);
      const snap: Snapshot = { launch: this.s.launch, attached: this.s.attached, vcpus: this.s.vcpus, memoryMiB: this.s.memoryMiB };
      await writeSidecar(path, snap);
      ctx.progress('snapshot written', 100);
      this.emitState();
      return { path, sizeBytes: (await stat(path)).size, state: vmState.encode(this.s) };
    });
  }

  /** vm/restore: a new QEMU with the saved devices waits for the snapshot, and ends paused. */
  restoreFrom(path: string, snap: Snapshot | undefined, ctx: CallContext): Promise<VmResult> {
    return this.serial(async () => {
      if (snap) {
        // The devices and CPUs present at the save must exist, with the same ids and buses, before
        // the state is loaded; the kernel and initrd stay this VM's (the guest's RAM holds the rest).
        this.s.launch = { ...snap.launch, kernel: this.s.launch.kernel, initrd: this.s.launch.initrd, cmdline: this.s.launch.cmdline };
        this.s.attached = snap.attached;
        this.s.memoryMiB = snap.memoryMiB;
      }
      ctx.progress('launching QEMU to receive the snapshot', 10);
      const inst = await this.launch({ incoming: 'defer' }, ctx.signal);
      this.s.status = 'paused';
      this.s.vcpus = snap?.vcpus ?? this.s.launch.vcpusBoot;
      await loadFromFile(inst.qmp, path);
      this.emit({ type: 'paused' });
      this.emitState();
      ctx.progress('restored (paused)', 100);
      return this.result();
    });
  }

  // ---- devices ----

  private freePort(): number | undefined {
    const used = new Set(this.s.attached.map((a) => a.port));
    for (let i = 0; i < this.s.launch.hotplugRootPorts; i++) if (!used.has(i)) return i;
    return undefined;
  }

  /** Cold devices for vm/create: put on free root ports (q35) so they can be hot-unplugged later. */
  coldAttach(device: Device): void {
    const machine = this.s.launch.machine;
    const support = supportOf(machine, device.type);
    if (!support?.coldplug) throw errors.notSupported('device/add', `device type ${device.type} cannot be attached before boot on ${machine}`);
    if (this.s.attached.some((a) => a.device.id === device.id)) throw errors.alreadyExists(device.id);
    const port = machine === 'q35' ? this.freePort() : undefined;
    const parts = qemuParts(device, machine, port === undefined ? undefined : rootPortId(port));
    this.s.attached.push({ device, parts, ...(port === undefined ? {} : { port }) });
  }

  addDevice(device: Device): Promise<{ deviceId: string; state: Json }> {
    return this.serial(async () => {
      const live = this.s.status === 'running' || this.s.status === 'paused';
      if (!live) {
        this.require(['created', 'stopped', 'crashed']);
        this.coldAttach(device);
      } else {
        await this.hotAdd(device);
      }
      this.emit({ type: 'device-added', deviceId: device.id });
      this.emitState();
      return { deviceId: device.id, state: vmState.encode(this.s) };
    });
  }

  private async hotAdd(device: Device): Promise<void> {
    const machine = this.s.launch.machine;
    if (!supportOf(machine, device.type)?.hotplug) throw errors.notSupported('device/add', `device type ${device.type} cannot be hot-plugged on ${machine}`);
    if (this.s.attached.some((a) => a.device.id === device.id)) throw errors.alreadyExists(device.id);
    let parts: QemuParts;
    let port: number | undefined;
    if (device.type === 'cpu') {
      parts = await this.cpuParts(device.id);
    } else {
      if (device.type !== 'memory') {
        port = this.freePort();
        if (port === undefined) throw errors.resourceExhausted(`all ${this.s.launch.hotplugRootPorts} hotplug root ports are taken (plugin.hotplugRootPorts)`);
      }
      if (device.type === 'memory') {
        const max = this.s.launch.memory.maxMiB ?? this.s.launch.memory.sizeMiB;
        if (this.s.memoryMiB + device.sizeMiB > max) throw errors.resourceExhausted(`memory would exceed memory.maxMiB (${max} MiB)`);
      }
      parts = qemuParts(device, machine, port === undefined ? undefined : rootPortId(port));
    }
    const undo: { command: string; args: Record<string, string> }[] = [];
    try {
      for (const o of parts.objects) {
        await this.qmp('object-add', o);
        undo.unshift({ command: 'object-del', args: { id: String(o.id) } });
      }
      for (const b of parts.blockdevs) {
        await this.qmp('blockdev-add', b);
        undo.unshift({ command: 'blockdev-del', args: { 'node-name': String(b['node-name']) } });
      }
      for (const n of parts.netdevs) {
        await this.qmp('netdev_add', n);
        undo.unshift({ command: 'netdev_del', args: { id: String(n.id) } });
      }
      for (const d of parts.devices) await this.qmp('device_add', d);
    } catch (e) {
      // Backends created for a device QEMU refused would leak: take them down again.
      for (const u of undo) await this.qmp(u.command, u.args).catch(() => undefined);
      throw e;
    }
    this.s.attached.push({ device, parts, ...(port === undefined ? {} : { port }) });
    if (device.type === 'cpu') this.s.vcpus += 1;
    if (device.type === 'memory') this.s.memoryMiB += device.sizeMiB;
  }

  /** The next free CPU slot as QEMU describes it (driver and socket/core/thread ids). */
  private async cpuParts(id: string): Promise<QemuParts> {
    const slots = (await this.qmp('query-hotpluggable-cpus')) as { type: string; props: Record<string, number | string>; 'qom-path'?: string }[];
    const free = slots.filter((s) => s['qom-path'] === undefined).sort((a, b) => Number(a.props['socket-id'] ?? 0) - Number(b.props['socket-id'] ?? 0));
    const slot = free[0];
    if (!slot) throw errors.resourceExhausted(`no free CPU slot: vcpus.max is ${this.s.launch.vcpusMax}`);
    return { objects: [], blockdevs: [], netdevs: [], devices: [{ driver: slot.type, id: qemuDeviceId(id), ...slot.props }] };
  }

  removeDevice(deviceId: string, signal: AbortSignal): Promise<{ state: Json }> {
    return this.serial(async () => {
      const rec = this.s.attached.find((a) => a.device.id === deviceId);
      if (!rec) throw errors.deviceNotFound('device/remove', this.id, deviceId);
      const live = this.s.status === 'running' || this.s.status === 'paused';
      if (!live) {
        this.s.attached = this.s.attached.filter((a) => a !== rec);
        this.emit({ type: 'device-removed', deviceId });
      } else {
        await this.hotRemove(rec, signal);
      }
      this.emitState();
      return { state: vmState.encode(this.s) };
    });
  }

  private async hotRemove(rec: Attached, signal: AbortSignal): Promise<void> {
    const machine = this.s.launch.machine;
    if (!supportOf(machine, rec.device.type)?.hotunplug) throw errors.notSupported('device/remove', `device type ${rec.device.type} cannot be hot-unplugged on ${machine}`);
    const inst = await this.control();
    try {
      // onQmpEvent drops the device's backends when DEVICE_DELETED comes, whether anyone still waits or not.
      await unplug(inst, qemuDeviceId(rec.device.id), signal);
    } catch (e) {
      if (!signal.aborted) throw toPluginError(e);
      // The VM's calls run one at a time: a caller that gives up must not leave the next ones queued behind
      // a guest that may never answer.
      throw new PluginError('Cancelled', `device/remove of ${rec.device.id}: the caller stopped waiting; if the guest still ejects it, device-removed says so`);
    }
    await vmmCall(() => this.backendsDropped.get(rec.device.id) ?? Promise.resolve());
    // onQmpEvent normally dropped it already.
    if (this.s.attached.includes(rec)) {
      this.s.attached = this.s.attached.filter((a) => a !== rec);
      this.emit({ type: 'device-removed', deviceId: rec.device.id });
    }
  }

  resizeVcpus(count: number): Promise<{ vcpus: number }> {
    return this.serial(async () => {
      this.require(['running', 'paused']);
      if (this.s.launch.machine !== 'q35') throw errors.notSupported('vm/resizeVcpus', 'microvm has no CPU hotplug');
      if (count > this.s.launch.vcpusMax) throw errors.resourceExhausted(`${count} vCPUs exceed vcpus.max (${this.s.launch.vcpusMax})`);
      if (count < this.s.launch.vcpusBoot) throw errors.notSupported('vm/resizeVcpus', `boot vCPUs (${this.s.launch.vcpusBoot}) cannot be removed`);
      while (this.s.vcpus < count) await this.hotAdd({ type: 'cpu', id: `vcpu-auto-${++this.autoIds}-${Date.now() % 100000}` });
      while (this.s.vcpus > count) {
        const last = [...this.s.attached].reverse().find((a) => a.device.type === 'cpu');
        if (!last) break;
        const inst = await this.control();
        await vmmCall(() => unplug(inst, qemuDeviceId(last.device.id)));
        this.s.attached = this.s.attached.filter((a) => a !== last);
        this.s.vcpus -= 1;
      }
      this.emitState();
      return { vcpus: this.s.vcpus };
    });
  }

  resizeMemory(sizeMiB: number): Promise<{ memoryMiB: number }> {
    return this.serial(async () => {
      this.require(['running', 'paused']);
      if (sizeMiB < this.s.memoryMiB) throw errors.notSupported('vm/resizeMemory', 'memory only grows (pc-dimm unplug needs the guest to offline the memory first)');
      if (sizeMiB > this.s.memoryMiB) await this.hotAdd({ type: 'memory', id: `mem-auto-${++this.autoIds}-${Date.now() % 100000}`, sizeMiB: sizeMiB - this.s.memoryMiB });
      this.emitState();
      return { memoryMiB: this.s.memoryMiB };
    });
  }

  // ---- queries ----

  async check(): Promise<{ ok: boolean; detail: string }> {
    if (this.s.status !== 'running' && this.s.status !== 'paused') return { ok: false, detail: `VM is ${this.s.status}` };
    try {
      const st = (await this.qmp('query-status', undefined, 5_000)) as { status: string };
      return { ok: true, detail: `QEMU ${this.s.pid} answers on QMP: ${st.status}` };
    } catch (e) {
      return { ok: false, detail: e instanceof Error ? e.message : String(e) };
    }
  }

  disconnect(): void {
    this.release();
  }

  async threads(): Promise<{ cpu: number; tid: number }[]> {
    this.require(['running', 'paused']);
    const cpus = (await this.qmp('query-cpus-fast')) as { 'cpu-index': number; 'thread-id': number }[];
    return cpus.map((c) => ({ cpu: c['cpu-index'], tid: c['thread-id'] }));
  }

  hasProcess(): boolean {
    return this.s.pid !== null && existsSync(`/proc/${this.s.pid}`);
  }
}
