// The VMM's request handlers (RequestHandler for Vmm in vmm/src/lib.rs, Vm in vmm/src/vm.rs): which
// state each action needs, what it changes, which events it emits and in what order, and the error
// each wrong state produces. Statuses carry both the implemented and the documented code.
import { access } from 'node:fs/promises';
import { constants } from 'node:fs';
import { ApiFailure, apiError, VM_ERROR, osErrorMessage, type Action } from './errors.js';
import { deviceEntries, removeDevice, validateDevices, withDevice, isObject, numberAt, stringAt, type DeviceList, type Json, type JsonObject } from './config.js';
import { DeviceManager, type AttachedDevice } from './devices.js';
import type { EventSink } from './event-log.js';
import { Guest } from './guest.js';
import { readSnapshot, SnapshotError, writeSnapshot } from './snapshot.js';

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

export class Vmm {
  private config: JsonObject | null = null;
  private vm: BootedVm | null = null;
  private queue: Promise<unknown> = Promise.resolve();

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
    if (this.vm) return this.vm;
    throw apiError(action, [implemented.cause], implemented.status, this.config ? documented.beforeBoot : documented.beforeCreate);
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
    const out: JsonObject = { config, state: this.vm?.state ?? 'Created', memory_actual_size: size };
    if (this.vm) out.device_tree = this.vm.devices.tree();
    return out;
  }

  /** VmCounters as raw JSON text (u64 values); errors name vm.info because the real one maps them so. */
  counters(): string {
    if (!this.vm) throw apiError('info', [VM_ERROR.notRunning], 500);
    return this.vm.devices.countersJson();
  }

  /** The vm.add-* handlers: cold add to the config before boot (204), hot add after (200 + PciDeviceInfo). */
  async addDevice(endpoint: AddEndpoint, cfg: JsonObject): Promise<Json | undefined> {
    const { list, action } = ADD_ENDPOINTS[endpoint];
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
  async restore(cfg: JsonObject, validateConfig: (c: Json) => string | undefined): Promise<void> {
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

  /** For the VMM's own exit: stop the guest and release host resources without emitting API events. */
  async dispose(): Promise<void> {
    const vm = this.vm;
    this.vm = null;
    if (vm) await this.teardown(vm);
  }
}
