// The VMM's request handlers (RequestHandler for Vmm in vmm/src/lib.rs, Vm in vmm/src/vm.rs): which
// state each action needs, what it changes, which events it emits and in what order, and the error
// each wrong state produces. Statuses carry both the implemented and the documented code.
import { access } from 'node:fs/promises';
import { constants } from 'node:fs';
import type { Socket } from 'node:net';
import { ApiFailure, apiError, MIGRATABLE_ERROR, VM_ERROR, osErrorMessage, type Action } from './errors.js';
import { deviceEntries, removeDevice, validateDevices, withDevice, isObject, numberAt, stringAt, type DeviceList, type Json, type JsonObject } from './config.js';
import { DeviceManager, type AttachedDevice } from './devices.js';
import type { EventSink } from './event-log.js';
import { Guest } from './guest.js';
import { readSnapshot, SnapshotError, writeSnapshot } from './snapshot.js';
import { acceptOne, connectTo, listenFor, MessageReader, parseMigrationUrl, send, type MigrationUrl } from './migration.js';

export type VmState = 'Running' | 'Paused' | 'Shutdown';

interface BootedVm {
  state: VmState;
  readonly guest: Guest;
  readonly devices: DeviceManager;
}

export interface VmmInfo {
  readonly buildVersion: string;
  readonly version: string;
  readonly features: readonly string[];
}

export interface VmmHooks {
  readonly events: EventSink;
  readonly noShutdown: boolean;
  readonly info: VmmInfo;
  /** The guest powered off without --no-shutdown: the VMM exits, as the real one does. */
  readonly exitRequested: () => void;
  readonly log: (msg: string) => void;
}

/** The device kinds the hot-add endpoints take, with the action naming their errors. */
export const ADD_ENDPOINTS = {
  'vm.add-disk': { list: 'disks', action: 'addDisk' },
  'vm.add-net': { list: 'net', action: 'addNet' },
  'vm.add-fs': { list: 'fs', action: 'addFs' },
  'vm.add-vsock': { list: 'vsock', action: 'addVsock' },
  'vm.add-device': { list: 'devices', action: 'addDevice' },
} as const satisfies Record<string, { list: DeviceList | 'vsock'; action: Action }>;

export type AddEndpoint = keyof typeof ADD_ENDPOINTS;

function invalidTransition(action: Action, vmErr: string, component: string, from: VmState, to: VmState): ApiFailure {
  return apiError(action, [vmErr, `Failed to ${component} migratable component`, `Invalid transition: InvalidStateTransition(${from}, ${to})`], 500);
}

/** Validates a VmConfig against the document's schema: the problem, or undefined. */
export type ConfigCheck = (c: Json) => string | undefined;

export class Vmm {
  private config: JsonObject | null = null;
  private vm: BootedVm | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  /** VmOwnership::Migration: a worker sends the VM; vm.info answers the state it had when the worker took it. */
  private sending: { readonly infoState: VmState } | null = null;

  constructor(private readonly hooks: VmmHooks) {}

  /** Runs one request at a time, as the real control loop takes one API request at a time. */
  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const next = this.queue.then(() => fn());
    this.queue = next.catch(() => undefined);
    return next;
  }

  private emit(event: string, properties?: Record<string, string>): void {
    this.hooks.events.emit('vm', event, properties);
  }

  ping(): Json {
    const { buildVersion, version, features } = this.hooks.info;
    return { build_version: buildVersion, version, pid: process.pid, features: [...features] };
  }

  /** vm_create: stores the config (defaults already filled in); the VM itself is only made at boot. */
  create(config: JsonObject): void {
    if (this.config) throw apiError('create', [VM_ERROR.alreadyCreated], 500);
    this.config = config;
  }

  private async checkPayload(config: JsonObject): Promise<void> {
    const payload = isObject(config.payload) ? config.payload : {};
    const files: [string | undefined, string][] = [
      [stringAt(payload, 'kernel'), VM_ERROR.kernelFile],
      [stringAt(payload, 'initramfs'), VM_ERROR.initramfsFile],
      [stringAt(payload, 'firmware'), VM_ERROR.firmwareFile],
    ];
    for (const [path, what] of files) {
      if (path === undefined) continue;
      await access(path, constants.R_OK).catch((e: unknown) => {
        throw apiError('boot', [what, osErrorMessage(e)], 500);
      });
    }
  }

  /** Makes every device of the config, console and rng first as the real device manager does. */
  private async makeDevices(config: JsonObject, action: Action): Promise<DeviceManager> {
    const entries = deviceEntries(config);
    const bootIds = new Set(entries.map((e) => stringAt(e.cfg, 'id')).filter((id): id is string => id !== undefined));
    const devices = new DeviceManager(bootIds);
    try {
      if (stringAt(config.console, 'mode') !== 'Off') await devices.attach('console', {}, action);
      for (const { list, cfg } of entries) await devices.attach(list, cfg, action);
      await devices.attach('rng', {}, action);
    } catch (e) {
      await devices.releaseAll();
      throw e;
    }
    return devices;
  }

  private async startGuest(): Promise<Guest> {
    return Guest.start((code, signal) => void this.onGuestExit(code, signal));
  }

  /** GuestExit in the control loop: the VM shuts down; without --no-shutdown the whole VMM goes. */
  private async onGuestExit(code: number | null, signal: string | null): Promise<void> {
    this.hooks.log(`guest exited (code ${code ?? 'none'}, signal ${signal ?? 'none'})`);
    if (this.hooks.noShutdown) {
      await this.run(() => this.shutdown()).catch(() => undefined);
    } else {
      this.hooks.exitRequested();
    }
  }

  async boot(): Promise<void> {
    if (this.vm) throw apiError('boot', [VM_ERROR.alreadyCreated], 500);
    this.emit('booting');
    const config = this.config;
    if (!config) throw apiError('boot', [VM_ERROR.missingConfig], 404);
    await this.checkPayload(config);
    validateDevices(config, 'boot');
    const devices = await this.makeDevices(config, 'boot');
    const guest = await this.startGuest().catch(async (e: unknown) => {
      await devices.releaseAll();
      throw apiError('boot', ['Error starting the guest of the contract double', String(e)], 500);
    });
    this.vm = { state: 'Running', guest, devices };
    this.emit('booted');
  }

  /**
   * The booted VM, or the failure for an action that needs one. As implemented that is "VM is not
   * running" with 500 (reboot: "VM is not created", 404); the document names its own code for the
   * not-created and the created-but-not-booted cases.
   */
  private requireVm(action: Action, documented: { beforeCreate: number; beforeBoot: number }, implemented = { status: 500, cause: VM_ERROR.notRunning as string }): BootedVm {
    this.notMigrating(action);
    if (this.vm) return this.vm;
    throw apiError(action, [implemented.cause], implemented.status, this.config ? documented.beforeBoot : documented.beforeCreate);
  }

  /** Every handler that needs the VM answers VmMigrating while a migration worker owns it. */
  private notMigrating(action: Action): void {
    if (this.sending) throw apiError(action, [VM_ERROR.migrating], 500);
  }

  async pause(): Promise<void> {
    const vm = this.requireVm('pause', { beforeCreate: 404, beforeBoot: 405 });
    this.emit('pausing');
    if (vm.state !== 'Running') throw invalidTransition('pause', VM_ERROR.pause, 'pause', vm.state, 'Paused');
    vm.guest.pause();
    vm.state = 'Paused';
    this.emit('paused');
  }

  async resume(): Promise<void> {
    // The document gives 404 for "not booted yet" and 405 for "not paused".
    const vm = this.requireVm('resume', { beforeCreate: 404, beforeBoot: 404 });
    this.emit('resuming');
    if (vm.state !== 'Paused') {
      const err = invalidTransition('resume', VM_ERROR.resume, 'resume', vm.state, 'Running');
      throw new ApiFailure(err.chain, 500, 405);
    }
    vm.guest.resume();
    vm.state = 'Running';
    this.emit('resumed');
  }

  private async teardown(vm: BootedVm): Promise<void> {
    await vm.guest.stop();
    await vm.devices.releaseAll();
  }

  /** vm_shutdown: the Vm is dropped and the config stays, so vm.info then reports Created. */
  async shutdown(): Promise<void> {
    const vm = this.requireVm('shutdown', { beforeCreate: 404, beforeBoot: 405 });
    this.vm = null;
    await this.teardown(vm);
    this.emit('shutdown');
  }

  async reboot(): Promise<void> {
    this.emit('rebooting');
    const vm = this.requireVm('reboot', { beforeCreate: 404, beforeBoot: 405 }, { status: 404, cause: VM_ERROR.notCreated });
    const config = this.config;
    this.vm = null;
    await this.teardown(vm);
    if (!config) return;
    const devices = await this.makeDevices(config, 'reboot');
    const guest = await this.startGuest();
    this.vm = { state: 'Running', guest, devices };
    this.emit('rebooted');
  }

  /** vm_delete: succeeds even with no VM; a booted VM is shut down first. */
  async delete(): Promise<void> {
    this.notMigrating('delete');
    if (!this.config) return;
    if (this.vm) await this.shutdown();
    this.config = null;
    this.emit('deleted');
  }

  /** vmm_shutdown: deletes the VM; the caller then stops serving and exits. */
  async shutdownVmm(): Promise<void> {
    await this.delete();
    this.hooks.events.emit('vmm', 'shutdown');
  }

  info(): Json {
    const config = this.config;
    if (!config) throw apiError('info', [VM_ERROR.notCreated], 404);
    const memory = isObject(config.memory) ? config.memory : {};
    const size = numberAt(memory, 'size') ?? 0;
    const out: JsonObject = { config, state: this.sending?.infoState ?? this.vm?.state ?? 'Created', memory_actual_size: size };
    if (this.vm) out.device_tree = this.vm.devices.tree();
    return out;
  }

  /** VmCounters as raw JSON text (u64 values); errors name vm.info because the real one maps them so. */
  counters(): string {
    this.notMigrating('info');
    if (!this.vm) throw apiError('info', [VM_ERROR.notRunning], 500);
    return this.vm.devices.countersJson();
  }

  /** The vm.add-* handlers: cold add to the config before boot (204), hot add after (200 + PciDeviceInfo). */
  async addDevice(endpoint: AddEndpoint, cfg: JsonObject): Promise<Json | undefined> {
    const { list, action } = ADD_ENDPOINTS[endpoint];
    this.notMigrating(action);
    const config = this.config;
    if (!config) throw apiError(action, [VM_ERROR.notCreated], 404);
    if (list === 'vsock' && config.vsock !== undefined) throw apiError(action, [VM_ERROR.tooManyVsock], 500);
    const next = withDevice(config, list, cfg);
    validateDevices(next, action);
    if (!this.vm) {
      this.config = next;
      return undefined;
    }
    const added: AttachedDevice = await this.vm.devices.attach(list, cfg, action);
    // attach() wrote the generated id into cfg, which the config now holds, as the real one records it.
    this.config = withDevice(config, list, cfg);
    return { id: added.id, bdf: added.bdf };
  }

  async removeDevice(id: string): Promise<void> {
    this.notMigrating('removeDevice');
    const config = this.config;
    if (!this.vm) {
      if (!config) throw apiError('removeDevice', [VM_ERROR.notCreated], 404);
      if (!removeDevice(config, id)) throw apiError('removeDevice', [`No device with id ${JSON.stringify(id)} to remove`], 404);
      return;
    }
    const device = await this.vm.devices.detach(id);
    if (!device) {
      throw apiError('removeDevice', [VM_ERROR.deviceManager, `Failed to find device corresponding to the given identifier: ${id}`], 404);
    }
    if (config) removeDevice(config, id);
    this.emit('device-removed', { id, bdf: device.bdf });
  }

  async resize(desired: JsonObject): Promise<void> {
    this.notMigrating('resize');
    const config = this.config;
    if (!config) throw apiError('resize', [VM_ERROR.notCreated], 404);
    const cpus = isObject(config.cpus) ? config.cpus : {};
    const memory = isObject(config.memory) ? config.memory : {};
    const vcpus = numberAt(desired, 'desired_vcpus');
    const ram = numberAt(desired, 'desired_ram');
    const balloon = numberAt(desired, 'desired_balloon');
    if (this.vm) {
      this.emit('resizing');
      if (vcpus !== undefined && vcpus > (numberAt(cpus, 'max_vcpus') ?? 1)) {
        throw apiError('resize', [VM_ERROR.cpuManager, 'Requested vCPUs exceed maximum'], 500);
      }
      const hotplug = numberAt(memory, 'hotplug_size');
      const size = numberAt(memory, 'size') ?? 0;
      if (ram !== undefined && hotplug !== undefined && ram > size + hotplug) {
        throw apiError('resize', [VM_ERROR.memoryManager, 'Not enough space in the hotplug RAM region'], 500);
      }
      if (balloon !== undefined && !isObject(config.balloon)) {
        throw apiError('resize', [VM_ERROR.deviceManager, "Missing virtio-balloon, can't proceed as expected"], 500);
      }
    }
    if (vcpus !== undefined) config.cpus = { ...cpus, boot_vcpus: vcpus };
    if (ram !== undefined) config.memory = { ...memory, size: ram };
    if (balloon !== undefined && isObject(config.balloon)) config.balloon = { ...config.balloon, size: balloon };
    if (this.vm) this.emit('resized');
  }

  async snapshot(destinationUrl: string): Promise<void> {
    const vm = this.requireVm('snapshot', { beforeCreate: 404, beforeBoot: 405 });
    this.emit('snapshotting');
    if (vm.state !== 'Paused') {
      throw apiError('snapshot', [VM_ERROR.snapshot, 'Failed to snapshot migratable component', 'Trying to snapshot while VM is running'], 500);
    }
    this.emit('snapshotted');
    const deviceIds = deviceEntries(this.config ?? {}).map((e) => stringAt(e.cfg, 'id') ?? '');
    await writeSnapshot(destinationUrl, this.config ?? {}, { deviceIds }).catch((e: unknown) => {
      throw e instanceof SnapshotError ? apiError('snapshot', e.chain, 500) : e;
    });
  }

  /**
   * vm_restore: only with no VM created; the restored VM comes up Paused unless `resume` is set.
   * `validateConfig` is the VmConfig schema, since the real one deserialises config.json with serde.
   */
  async restore(cfg: JsonObject, validateConfig: ConfigCheck): Promise<void> {
    if (this.vm || this.config) throw apiError('restore', [VM_ERROR.alreadyCreated], 500, 404);
    const url = stringAt(cfg, 'source_url') ?? '';
    const snap = await readSnapshot(url).catch((e: unknown) => {
      throw e instanceof SnapshotError ? apiError('restore', e.chain, 500) : e;
    });
    const problem = validateConfig(snap.config);
    if (problem !== undefined || !isObject(snap.config)) {
      throw apiError('restore', [VM_ERROR.restore, 'Error deserialising VM config snapshot', problem ?? 'not an object'], 500);
    }
    const config = snap.config;
    this.emit('restoring');
    const devices = await this.makeDevices(config, 'restore');
    const guest = await this.startGuest();
    guest.pause();
    this.config = config;
    this.vm = { state: 'Paused', guest, devices };
    this.emit('restored');
    if (cfg.resume === true) await this.resume();
  }

  // Live migration (vm_receive_migration, vm_send_migration and check_migration in vmm/src/lib.rs).

  /**
   * vm_receive_migration: only into a VMM without a booted VM; binds the URL, takes one connection and runs the
   * receiver's state machine to its end, all in the control loop: the request is answered (and the next one
   * taken) only once the VM runs here, or the migration was aborted.
   */
  async receiveMigration(data: JsonObject, validateConfig: ConfigCheck): Promise<void> {
    const fail = (...cause: string[]): ApiFailure => apiError('receiveMigration', [MIGRATABLE_ERROR.receive, ...cause], 500);
    if (this.vm) throw fail("Can't receive a migration when a VM is already created");
    if (this.sending) throw fail('There is already an ongoing migration');
    const url = this.receiverUrl(data, fail);
    const server = await listenFor(url).catch((e: unknown) => {
      throw fail(`Error binding to ${url.kind === 'unix' ? 'UNIX' : 'TCP'} socket`, osErrorMessage(e));
    });
    this.emit('migration-receive-ready');
    const socket = await acceptOne(server);
    this.emit('migration-receive-started');
    const problem = await this.receiveStream(socket, validateConfig);
    if (problem !== undefined) {
      this.hooks.log(`Migration aborted: ${problem}`);
      this.emit('migration-receive-failed');
      const vm = this.vm;
      this.vm = null;
      this.config = null;
      if (vm) await this.teardown(vm);
      throw apiError('receiveMigration', [MIGRATABLE_ERROR.complete, 'Migration was aborted'], 500);
    }
    this.emit('migration-receive-finished');
  }

  /** VmReceiveMigrationData::validate, and what the double does not model (TLS, postcopy, NUMA zones). */
  private receiverUrl(data: JsonObject, fail: (...cause: string[]) => ApiFailure): MigrationUrl {
    const text = stringAt(data, 'receiver_url') ?? '';
    const invalid = 'Invalid receive migration configuration';
    if (!text.startsWith('tcp:') && !text.startsWith('unix:')) throw fail(invalid, 'Expected receiver_url to either use `tcp` or `unix` prefix');
    let url: MigrationUrl;
    try {
      url = parseMigrationUrl(text);
    } catch (e) {
      throw fail(invalid, 'Expected receiver_url in the form of either `tcp:<host>:<port>` or `unix:<path>:`', e instanceof Error ? e.message : String(e));
    }
    if (data.tls_dir !== undefined && url.kind === 'unix') throw fail(invalid, 'UNIX sockets and TLS encryption cannot be used at the same time');
    if (data.tls_dir !== undefined) throw fail('TLS migration is not modelled by the cloud-hypervisor contract double');
    if (data.memory_mode === 'Postcopy') throw fail('postcopy migration is not modelled by the cloud-hypervisor contract double');
    if (Array.isArray(data.zone_updates) && data.zone_updates.length > 0) throw fail('Error updating memory zones: the contract double has no memory zones');
    return url;
  }

  /**
   * The receiver's state machine: Established -start-> Started -config-> Configured -state-> StateReceived
   * -complete|complete-paused-> Completed; `abandon`, a refused step or a broken connection abort it. Answers
   * why it was aborted, or undefined once the VM is here (running, or paused if it was sent paused).
   */
  private async receiveStream(socket: Socket, validateConfig: ConfigCheck): Promise<string | undefined> {
    const reader = new MessageReader(socket);
    let step: 'established' | 'started' | 'configured' | 'state-received' = 'established';
    let config: JsonObject | undefined;
    for (;;) {
      let msg: JsonObject;
      try {
        msg = await reader.next();
      } catch (e) {
        return e instanceof Error ? e.message : String(e);
      }
      const command = stringAt(msg, 'command');
      if (command === 'abandon') return 'the sender abandoned the migration';
      try {
        if (step === 'established' && command === 'start') step = 'started';
        else if (step === 'started' && command === 'config') {
          const problem = validateConfig(msg.payload ?? null);
          if (problem !== undefined || !isObject(msg.payload ?? null)) throw new Error(`Error deserialising the VM config: ${problem ?? 'not an object'}`);
          config = msg.payload as JsonObject;
          step = 'configured';
        } else if (step === 'configured' && command === 'state' && config) {
          this.emit('restoring');
          const devices = await this.makeDevices(config, 'receiveMigration');
          const guest = await this.startGuest();
          guest.pause();
          this.config = config;
          this.vm = { state: 'Paused', guest, devices };
          this.emit('restored');
          step = 'state-received';
        } else if (step === 'state-received' && (command === 'complete' || command === 'complete-paused')) {
          if (command === 'complete') await this.resume();
          send(socket, { ok: true });
          socket.end();
          return undefined;
        } else throw new Error(`Invalid command ${String(command)} in state ${step}`);
        send(socket, { ok: true });
      } catch (e) {
        send(socket, { ok: false, error: e instanceof ApiFailure ? e.chain.join(': ') : e instanceof Error ? e.message : String(e) });
        socket.end();
        return `migration command ${String(command)} failed: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
  }

  /**
   * vm_send_migration: checks the request, hands the VM to a migration worker and answers at once; the
   * worker's outcome shows in the event monitor (migration-finished / migration-failed), and on success
   * the VMM exits.
   */
  async sendMigration(data: JsonObject): Promise<void> {
    const fail = (...cause: string[]): ApiFailure => apiError('sendMigration', [MIGRATABLE_ERROR.send, ...cause], 500);
    if (this.sending) throw fail('There is already an ongoing migration');
    const vm = this.vm;
    if (!vm || !this.config) throw fail(VM_ERROR.notRunning);
    const url = this.destinationUrl(data, fail);
    const memory = isObject(this.config.memory) ? this.config.memory : {};
    if (data.local === true && memory.shared !== true && memory.hugepages !== true) throw fail('Local migration requires shared memory or hugepages enabled');
    if (vm.state !== 'Running' && vm.state !== 'Paused') throw fail(`VM is not running or paused: ${vm.state}`);
    this.sending = { infoState: vm.state };
    void this.migrationWorker(vm, url);
  }

  /** VmSendMigrationData::validate, and what the double does not model (TLS, postcopy, several connections). */
  private destinationUrl(data: JsonObject, fail: (...cause: string[]) => ApiFailure): MigrationUrl {
    const invalid = (m: string): ApiFailure => fail('Invalid send migration configuration', `Error validating send migration parameters: ${m}`);
    let url: MigrationUrl;
    try {
      url = parseMigrationUrl(stringAt(data, 'destination_url') ?? '');
    } catch (e) {
      throw invalid(e instanceof Error ? e.message : String(e));
    }
    const connections = numberAt(data, 'connections') ?? 1;
    if (url.kind === 'unix' && connections > 1) throw invalid('UNIX sockets and connections option cannot be used at the same time.');
    if (url.kind === 'unix' && data.tls_dir !== undefined) throw invalid('UNIX sockets and TLS encryption cannot be used at the same time.');
    if (data.local === true && url.kind !== 'unix') throw invalid('local option is only supported with UNIX sockets.');
    if (data.tls_dir !== undefined) throw fail('TLS migration is not modelled by the cloud-hypervisor contract double');
    if (data.memory_mode === 'Postcopy') throw fail('postcopy migration is not modelled by the cloud-hypervisor contract double');
    if (connections > 1) throw fail('several migration connections are not modelled by the cloud-hypervisor contract double');
    return url;
  }

  /**
   * The migration worker: connect, send the config, one memory iteration (the double's guest has no memory
   * to speak of), pause for the final state, complete. check_migration then runs in the control loop: on
   * success the VM is shut down without an event and the VMM exits; on failure a VM that was running resumes.
   */
  private async migrationWorker(vm: BootedVm, url: MigrationUrl): Promise<void> {
    const initial = vm.state;
    this.emit('migration-started');
    let socket: Socket | undefined;
    try {
      socket = await connectTo(url);
      const reader = new MessageReader(socket);
      const ask = async (command: string, payload?: Json): Promise<void> => {
        send(socket!, payload === undefined ? { command } : { command, payload });
        const answer = await reader.next();
        if (answer.ok !== true) throw new Error(`the destination refused ${command}: ${String(answer.error)}`);
      };
      await ask('start');
      await ask('config', this.config);
      this.emit('migration-memory-iteration', { id: '0' });
      if (vm.state === 'Running') {
        this.emit('pausing');
        vm.guest.pause();
        vm.state = 'Paused';
        this.emit('paused');
      }
      await ask('state', { deviceIds: deviceEntries(this.config ?? {}).map((e) => stringAt(e.cfg, 'id') ?? '') });
      await ask(initial === 'Running' ? 'complete' : 'complete-paused');
    } catch (e) {
      this.hooks.log(`Migration failed: ${e instanceof Error ? e.message : String(e)}`);
      if (socket && !socket.destroyed) send(socket, { command: 'abandon' });
      socket?.end();
      this.emit('migration-failed');
      await this.run(async () => {
        this.sending = null;
        if (initial === 'Running' && vm.state === 'Paused') await this.resume();
      }).catch((err: unknown) => this.hooks.log(`Failed resuming VM after failed migration: ${String(err)}`));
      return;
    }
    socket.end();
    this.emit('migration-finished');
    await this.run(async () => {
      this.sending = null;
      this.vm = null;
      await this.teardown(vm);
    }).catch(() => undefined);
    this.hooks.exitRequested();
  }

  /** For the VMM's own exit: stop the guest and release host resources without emitting API events. */
  async dispose(): Promise<void> {
    const vm = this.vm;
    this.vm = null;
    if (vm) await this.teardown(vm);
  }
}
