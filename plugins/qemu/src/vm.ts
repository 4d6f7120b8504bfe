// One QEMU VM: its QEMU process (launched, re-attached, watched), the status its QMP events and its exit
// drive, its lifecycle calls and the state the host keeps for it. Device calls are in devices.ts.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ServedVm, errors, proc, stateStatus, type CallContext, type Cancellable, type EventInput, type WaitResult } from 'hvplug/plugin-sdk';
import type { ResultInputOf, VmConfig, VmResult } from 'hvplug/protocol';
import { buildQemuArgs, type QemuLaunchConfig } from './cmdline.js';
import { backendCleanup, deviceIdOf, type Attached, type QemuParts } from './device-map.js';
import { toPluginError, vmmCall } from './errors.js';
import { attachQemu, connectablePath, killProcessGroup, PIDFILE, QMP_SOCKET, qemuOfPidfile, quitQemu, startQemu, type QemuExit, type QemuInstance } from './process.js';
import type { QmpEvent } from './qmp.js';
import { loadFromFile, migrateToFile, writeSidecar, type Snapshot } from './snapshot.js';
import { MIGRATE_SOCKET, migrateLive } from './migration.js';
import { dropMigrationTls, useMigrationTls, type StreamSecurity } from './migration-tls.js';
import { vmState, type Json, type LaunchInfo, type VmState } from './state.js';

/** The serial console's socket (console "socket"), relative to the run directory, QEMU's cwd. */
export const CONSOLE_SOCKET = 'console.sock';

/** The state but its status, which ServedVm keeps. */
export type VmFacts = Omit<VmState, 'status'>;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The ACPI power button only asks the guest, and a guest still booting misses it while it answers a repeat. */
const POWER_BUTTON_REPEAT_MS = 2_000;

/** Waits for `outcome`, asking the guest `again` every `everyMs` meanwhile; a failed repeat changes nothing. */
export async function askingAgain<T>(outcome: Promise<T>, everyMs: number, again: () => Promise<unknown>): Promise<T> {
  const repeat = setInterval(() => void again().catch(() => undefined), everyMs);
  try {
    return await outcome;
  } finally {
    clearInterval(repeat);
  }
}

export class QemuVm extends ServedVm {
  readonly state: VmFacts;
  private inst: QemuInstance | undefined;
  private exitHandled: Promise<void> = Promise.resolve();
  private stopRequested = false;
  private shutdownReason: string | undefined;
  /** A QEMU under -incoming defer that waits for a live migration: its first RESUME is the guest running here. */
  private incoming = false;
  /** vm/migrate is under way: the STOP of its last phase (and a RESUME after a failure) are no pause of the VM. */
  private migrating = false;
  /** vm/pause's stop or vm/resume's cont is under way: its STOP or RESUME is the call's to announce (see command). */
  private ownCommand: { readonly event: 'STOP' | 'RESUME'; seen: boolean } | undefined;
  /** Backend cleanups of devices the guest let go, by device id, until they are done. */
  readonly backendsDropped = new Map<string, Promise<void>>();

  constructor(
    vmId: string,
    private readonly config: VmConfig,
    state: VmState,
    send: (event: EventInput) => void,
  ) {
    super(vmId, state.status, send);
    const { status: _status, ...facts } = state;
    this.state = facts;
  }

  static initialState(runDir: string, launch: LaunchInfo, attached: Attached[], consoleSocket?: string): VmState {
    return {
      status: 'created',
      runDir,
      qmpSocket: QMP_SOCKET,
      consoleLog: join(runDir, 'console.log'),
      ...(consoleSocket === undefined ? {} : { consoleSocket }),
      pid: null,
      launch,
      vcpus: launch.vcpusBoot,
      memoryMiB: launch.memory.sizeMiB,
      attached,
      startedAt: null,
      lastExit: null,
    };
  }

  get pid(): number | null {
    return this.state.pid;
  }

  /** The QEMU process this VM has now, as /proc sees it. */
  get livePid(): number | undefined {
    const pid = this.state.pid;
    return pid !== null && proc.isAlive(pid) ? pid : undefined;
  }

  /** How many vm/wait calls wait for this VM's end. */
  get waiting(): number {
    return this.waiters.size;
  }

  get live(): boolean {
    return this.status === 'running' || this.status === 'paused';
  }

  /** A live VM's status is written `running` (stateStatus): reattachQemu asks QEMU whether it is paused. */
  encoded(): Json {
    return vmState.encode({ ...this.state, status: stateStatus(this.status) });
  }

  result(): VmResult {
    return { status: this.status, state: this.encoded() };
  }

  /**
   * The answer of a call that leaves the state as it was (vm/pause, vm/resume: stateStatus writes a paused VM
   * `running`): an answer without `state` keeps the host's. Not sending it spares, on every pause and resume, its
   * encoding here and its validation and comparison on the host (measured in the commit that made it so).
   */
  statusOnly(): VmResult {
    return { status: this.status };
  }

  /** Something changed: the host gets the new state as an event. */
  stateChanged(): void {
    this.emit({ type: 'state', state: this.encoded() });
  }

  currentConfig(): VmConfig {
    return { ...this.config, devices: this.state.attached.map((a) => a.device) };
  }

  // QEMU process

  launchConfig(extra: { paused?: boolean; incoming?: 'defer' }): QemuLaunchConfig {
    const l = this.state.launch;
    const cold: QemuParts = { objects: [], blockdevs: [], netdevs: [], devices: [] };
    for (const a of this.state.attached) {
      cold.objects.push(...a.parts.objects);
      cold.blockdevs.push(...a.parts.blockdevs);
      cold.netdevs.push(...a.parts.netdevs);
      cold.devices.push(...a.parts.devices);
    }
    return {
      name: this.vmId,
      machine: l.machine,
      accel: l.accel,
      cpuModel: l.cpuModel,
      kernel: l.kernel,
      initrd: l.initrd,
      cmdline: l.cmdline,
      vcpus: { boot: l.vcpusBoot, max: l.vcpusMax },
      memory: l.memory,
      qmpSocket: this.state.qmpSocket,
      console:
        this.state.consoleSocket === undefined
          ? { kind: 'log', logFile: this.state.consoleLog }
          : { kind: 'socket', socketPath: this.state.consoleSocket, logFile: this.state.consoleLog },
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
    const inst = await vmmCall(() => startQemu({ args, runDir: this.state.runDir, qmpSocket: this.state.qmpSocket, signal }));
    this.adopt(inst);
    this.state.startedAt = Date.now();
    return inst;
  }

  /** Takes `inst` as this VM's QEMU: its events and its exit now drive the VM's status. */
  private adopt(inst: QemuInstance): void {
    this.inst = inst;
    this.state.pid = inst.pid;
    this.stopRequested = false;
    this.shutdownReason = undefined;
    inst.qmp.on('event', (ev) => this.onQmpEvent(ev));
    this.exitHandled = inst.exited.then((exit) => this.onExit(inst, exit));
  }

  private onQmpEvent(ev: QmpEvent): void {
    switch (ev.event) {
      case 'STOP':
        if (this.ownCommand?.event === 'STOP') this.ownCommand.seen = true;
        else this.onStop();
        return;
      case 'RESUME':
        if (this.incoming) {
          this.incoming = false;
          this.announce('running');
          this.stateChanged();
        } else if (this.ownCommand?.event === 'RESUME') this.ownCommand.seen = true;
        else this.onResume();
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
        const at = this.state.attached.findIndex((a) => a.device.id === id);
        if (id === undefined || at < 0) return;
        const [rec] = this.state.attached.splice(at, 1);
        if (rec) this.dropBackends(id, rec.parts);
        this.emit({ type: 'device-removed', deviceId: id });
        this.stateChanged();
        return;
      }
      default:
        return;
    }
  }

  private onStop(): void {
    // Under -no-shutdown QEMU stops the CPUs after a guest power-off or our quit: the VM is ending, not pausing.
    if (this.status === 'running' && !this.migrating && this.shutdownReason === undefined && !this.stopRequested) this.announce('paused');
  }

  private onResume(): void {
    if (this.status === 'paused' && !this.migrating) this.announce('resumed');
  }

  private onExit(inst: QemuInstance, exit: QemuExit): void {
    if (this.inst !== inst) return;
    inst.detach();
    this.inst = undefined;
    this.state.pid = null;
    const how = exit.signal ? `signal ${exit.signal}` : exit.code === null ? 'an unknown status (re-attached)' : `code ${exit.code}`;
    // Without a stop request or a guest shutdown seen over QMP, any end is a crash; a re-attached
    // QEMU's exit status is unknowable (not our child), which counts as abnormal too.
    const crashed = !this.stopRequested && this.shutdownReason === undefined && (exit.signal !== null || exit.code !== 0);
    const reason = this.stopRequested
      ? 'stopped by vm/stop'
      : this.shutdownReason !== undefined
        ? `guest shutdown (${this.shutdownReason})`
        : `QEMU exited with ${how}`;
    this.state.lastExit = { code: exit.code, signal: exit.signal, reason };
    this.status = crashed ? 'crashed' : 'stopped';
    this.assumeAnnounced(this.status);
    this.state.vcpus = this.state.launch.vcpusBoot;
    this.emit({ type: 'exited', code: exit.code, signal: exit.signal, reason });
    if (crashed) this.emit({ type: 'crashed', reason });
    this.stateChanged();
    this.settleWaiters(this.waitResult());
  }

  /** The live QEMU, re-attaching through QMP after vm/disconnect. */
  async control(): Promise<QemuInstance> {
    if (this.inst) return this.inst;
    const pid = this.livePid;
    if (pid === undefined) throw errors.invalidState(this.vmId, this.status, ['running', 'paused']);
    const inst = await vmmCall(() => attachQemu({ pid, runDir: this.state.runDir, qmpSocket: this.state.qmpSocket }));
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

  /** A QMP command to this VM's QEMU, its failures as protocol errors; in one async step when QEMU is attached. */
  async qmp(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<unknown> {
    const inst = this.inst ?? (await this.control());
    try {
      return await inst.qmp.execute(command, args, { timeoutMs });
    } catch (err) {
      throw toPluginError(err);
    }
  }

  /**
   * vm/pause's `stop`, vm/resume's `cont`. QEMU sends the STOP or RESUME a command causes before its answer, and the
   * two are read apart: announced from the event, the status would reach the SDK while the call is under way, to be
   * held (a timer) until the answer leaves with it, or written alone when the answer is late, a second write and a
   * second wake-up of the host. The call announces it with its answer instead, and the event only marks it seen: a
   * command that fails after its event did stop or resume the guest, and the status follows the event then.
   */
  private async command(command: 'stop' | 'cont', event: 'STOP' | 'RESUME'): Promise<void> {
    const own = { event, seen: false };
    this.ownCommand = own;
    try {
      await this.qmp(command);
    } catch (err) {
      if (this.ownCommand === own) this.ownCommand = undefined;
      if (own.seen) {
        if (event === 'STOP') this.onStop();
        else this.onResume();
      }
      throw err;
    } finally {
      if (this.ownCommand === own) this.ownCommand = undefined;
    }
  }

  /** The guest is gone and QEMU (under -no-shutdown) waits: end it, so its exit reports the VM stopped. */
  private quitAfterShutdown(): void {
    this.inst?.qmp.execute('quit').catch(() => {
      // Already ending, or the monitor is gone: the exit watcher reports the VM either way.
    });
  }

  /** vm/recover: attach to the QEMU of an earlier plugin process; gone means lost. */
  async reattach(): Promise<void> {
    await this.reattachQemu();
    this.assumeAnnounced(this.status);
  }

  private async reattachQemu(): Promise<void> {
    const pid = this.state.pid;
    if (pid === null) return this.reclaimUnrecorded();
    try {
      const inst = await attachQemu({ pid, runDir: this.state.runDir, qmpSocket: this.state.qmpSocket });
      this.adopt(inst);
      const st = (await inst.qmp.execute('query-status')) as { status: string; running: boolean };
      this.status = st.running ? 'running' : 'paused';
      if (st.status === 'shutdown') {
        // The guest powered off while no plugin watched (QEMU runs with -no-shutdown): the VM ended as a
        // guest power-off does, and is answered stopped once QEMU is gone.
        this.shutdownReason = 'while no plugin was attached';
        this.quitAfterShutdown();
        await this.exitHandled;
      }
    } catch (e) {
      this.state.pid = null;
      this.status = 'lost';
      this.state.lastExit = { code: null, signal: null, reason: `QEMU could not be re-attached: ${e instanceof Error ? e.message : String(e)}` };
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
    const pid = await qemuOfPidfile(this.state.runDir, this.state.qmpSocket);
    if (pid === undefined) return;
    let inst: QemuInstance;
    try {
      inst = await attachQemu({ pid, runDir: this.state.runDir, qmpSocket: this.state.qmpSocket });
    } catch {
      await killProcessGroup(pid, { graceMs: 1_000 });
      return;
    }
    const st = (await inst.qmp.execute('query-status').catch(() => undefined)) as { status: string; running: boolean } | undefined;
    if (st !== undefined && (st.running || st.status === 'paused')) {
      this.adopt(inst);
      this.status = st.running ? 'running' : 'paused';
      this.state.startedAt ??= Date.now();
      return;
    }
    await quitQemu(inst, { timeoutMs: 3_000 });
  }

  /** vm/delete's last step: a QEMU of this VM that the state does not name (see reclaimUnrecorded) ends too. */
  async endUnrecorded(): Promise<void> {
    const pid = await qemuOfPidfile(this.state.runDir, this.state.qmpSocket);
    if (pid !== undefined && pid !== this.inst?.pid) await killProcessGroup(pid, { graceMs: 1_000 });
  }

  // Lifecycle

  start(ctx: CallContext): Promise<VmResult> {
    return this.exclusive(async () => {
      this.require(['created', 'stopped', 'crashed']);
      ctx.progress('launching QEMU (vCPUs stopped)', 10);
      const inst = await this.launch({ paused: true }, ctx.signal);
      ctx.progress('QMP connected; starting the vCPUs', 80);
      this.state.vcpus = this.state.launch.vcpusBoot;
      // The status stays what it was until `cont` answers, so the RESUME event it causes is not
      // reported as a resume: the host hears 'running'.
      await vmmCall(() => inst.qmp.execute('cont'));
      this.announce('running');
      this.stateChanged();
      ctx.progress('running', 100);
      return this.result();
    }, ctx.signal);
  }

  stop(force: boolean, graceMs: number, signal?: AbortSignal): Promise<VmResult> {
    return this.exclusive(async () => {
      // An incoming VM is not live yet, but its QEMU runs (waiting for the stream): it ends with the VM.
      if (!this.live && !this.incoming) return this.result();
      const inst = await this.control().catch(() => undefined);
      if (!inst) return this.result();
      this.stopRequested = true;
      // ACPI power button: a guest that listens shuts down cleanly within the grace period; pressed again
      // while it runs (see askingAgain). A paused guest cannot answer it, so there is nothing to wait for.
      if (!force && graceMs > 0 && this.status === 'running') {
        const press = (): Promise<boolean> => inst.qmp.execute('system_powerdown').then(() => true, () => false);
        if (await press()) await askingAgain(Promise.race([inst.exited, sleep(graceMs)]), POWER_BUTTON_REPEAT_MS, press);
      }
      if (proc.isAlive(inst.pid)) await quitQemu(inst, { timeoutMs: 3_000 });
      // A re-attached QEMU is watched by polling, which quitQemu's detach ends: once the process is
      // gone, the exit is recorded here if the watcher did not see it first.
      await Promise.race([this.exitHandled, sleep(500)]);
      if (this.inst === inst && !proc.isAlive(inst.pid)) this.onExit(inst, { code: null, signal: null });
      return this.result();
    }, signal);
  }

  /** `call` is the call's context: pause and resume use no signal once running, and make none unless they wait. */
  pause(call: Cancellable): Promise<VmResult> {
    return this.exclusive(async () => {
      this.require(['running']);
      await this.command('stop', 'STOP');
      this.announce('paused');
      return this.statusOnly();
    }, call);
  }

  resume(call: Cancellable): Promise<VmResult> {
    return this.exclusive(async () => {
      this.require(['paused']);
      await this.command('cont', 'RESUME');
      this.announce('resumed');
      return this.statusOnly();
    }, call);
  }

  wait(signal: AbortSignal): Promise<WaitResult> {
    return this.waitFor(this.live ? undefined : this.waitResult(), signal);
  }

  private waitResult(): WaitResult {
    return { status: this.status, exitCode: this.state.lastExit?.code ?? null, reason: this.state.lastExit?.reason ?? `VM is ${this.status}` };
  }

  /** Stops QEMU at once (used by vm/delete). */
  async destroy(): Promise<void> {
    await this.stop(true, 0);
    this.inst?.detach();
  }

  /** vm/disconnect, and the plugin's shutdown: let go of QMP, keep QEMU running. */
  release(): void {
    this.inst?.detach();
    this.inst = undefined;
  }

  // Snapshots

  save(path: string, ctx: CallContext): Promise<ResultInputOf<'vm/save'>> {
    return this.exclusive(async () => {
      // The protocol saves paused VMs only, so the caller decides when the guest stops running.
      this.require(['paused']);
      ctx.progress('writing the snapshot', 10);
      await migrateToFile((await this.control()).qmp, path, ctx.signal);
      const s = this.state;
      await writeSidecar(path, { launch: s.launch, attached: s.attached, vcpus: s.vcpus, memoryMiB: s.memoryMiB });
      ctx.progress('snapshot written', 100);
      this.stateChanged();
      return { path, sizeBytes: (await stat(path)).size, state: this.encoded() };
    }, ctx.signal);
  }

  /** vm/restore: a new QEMU with the saved devices waits for the snapshot, and ends paused. */
  restoreFrom(path: string, snap: Snapshot | undefined, ctx: CallContext): Promise<VmResult> {
    return this.exclusive(async () => {
      const s = this.state;
      if (snap) {
        // The devices and CPUs present at the save must exist, with the same ids and buses, before
        // the state is loaded; the kernel and initrd stay this VM's (the guest's RAM holds the rest).
        s.launch = { ...snap.launch, kernel: s.launch.kernel, initrd: s.launch.initrd, cmdline: s.launch.cmdline };
        s.attached = snap.attached;
        s.memoryMiB = snap.memoryMiB;
      }
      ctx.progress('launching QEMU to receive the snapshot', 10);
      const inst = await this.launch({ incoming: 'defer' }, ctx.signal);
      this.status = 'paused';
      s.vcpus = snap?.vcpus ?? s.launch.vcpusBoot;
      await loadFromFile(inst.qmp, path);
      this.announce('paused');
      this.stateChanged();
      ctx.progress('restored (paused)', 100);
      return this.result();
    }, ctx.signal);
  }

  // Live migration

  /**
   * vm/receiveMigration: a QEMU with the VM's devices under -incoming defer, listening (migrate-incoming) on a unix
   * socket in its run directory, or on TCP at `address` (the kernel picks the port), in TLS when `tlsDir` is given
   * (the source must present a certificate of its CA). The guest runs (RESUME) once the stream is in: QEMU starts
   * it as the source had it running.
   */
  receiveMigration(address: string | undefined, tlsDir: string | undefined, signal: AbortSignal): Promise<{ uri: string; tls: boolean }> {
    return this.exclusive(async () => {
      this.require(['created']);
      const inst = await this.launch({ incoming: 'defer' }, signal);
      this.incoming = true;
      await vmmCall(() => inst.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] }));
      if (address === undefined) {
        // Relative: QEMU's cwd is the run directory; the source is told a path short enough for sun_path.
        await vmmCall(() => inst.qmp.execute('migrate-incoming', { uri: `unix:${MIGRATE_SOCKET}` }));
        this.stateChanged();
        return { uri: `unix:${connectablePath(this.state.runDir, MIGRATE_SOCKET, inst.pid)}`, tls: false };
      }
      const host = address.includes(':') ? `[${address}]` : address;
      if (tlsDir !== undefined) await useMigrationTls(inst.qmp, tlsDir, 'server');
      await vmmCall(() => inst.qmp.execute('migrate-incoming', { uri: `tcp:${host}:0` }));
      const info = (await vmmCall(() => inst.qmp.execute('query-migrate'))) as { 'socket-address'?: { type?: string; port?: string }[] };
      const port = info['socket-address']?.find((a) => a.type === 'inet')?.port;
      if (port === undefined) throw errors.vmmFailure(`QEMU listens for the migration on ${host} but does not say which port (query-migrate: ${JSON.stringify(info)})`);
      this.stateChanged();
      return { uri: `tcp:${host}:${port}`, tls: tlsDir !== undefined };
    }, signal);
  }

  /**
   * vm/migrate: QEMU's own live migration to `uri`, progress from query-migrate. On completion the guest runs at
   * the destination; this QEMU (left in postmigrate) is ended without a word to the host (the VM is not stopped:
   * it went). A failure leaves the guest running here, as QEMU resumes it, and takes the TLS settings away again:
   * the next attempt may go elsewhere, in the clear.
   */
  migrate(uri: string, security: StreamSecurity, ctx: CallContext): Promise<ResultInputOf<'vm/migrate'>> {
    return this.exclusive(async () => {
      this.require(['running']);
      const inst = await this.control();
      this.migrating = true;
      let done: Awaited<ReturnType<typeof migrateLive>>;
      try {
        if (security.tls) await useMigrationTls(inst.qmp, security.dir, 'client', security.hostname);
        done = await migrateLive(inst.qmp, uri, ctx);
      } catch (err) {
        if (security.tls) await dropMigrationTls(inst.qmp);
        throw err;
      } finally {
        this.migrating = false;
      }
      this.forget();
      this.stopRequested = true;
      await quitQemu(inst, { timeoutMs: 3_000 });
      this.settleWaiters({ status: 'stopped', exitCode: null, reason: `the VM migrated to ${uri}` });
      return done;
    }, ctx.signal);
  }

  // Queries: they do not queue.

  async check(): Promise<{ ok: boolean; detail: string }> {
    if (!this.live) return { ok: false, detail: `VM is ${this.status}` };
    try {
      const st = (await this.qmp('query-status', undefined, 5_000)) as { status: string };
      return { ok: true, detail: `QEMU ${this.state.pid} answers on QMP: ${st.status}` };
    } catch (e) {
      return { ok: false, detail: e instanceof Error ? e.message : String(e) };
    }
  }

  async threads(): Promise<{ cpu: number; tid: number }[]> {
    this.require(['running', 'paused']);
    const cpus = (await this.qmp('query-cpus-fast')) as { 'cpu-index': number; 'thread-id': number }[];
    return cpus.map((c) => ({ cpu: c['cpu-index'], tid: c['thread-id'] }));
  }
}
