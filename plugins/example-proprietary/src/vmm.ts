import { mkdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errors, PluginError, type CallContext, type Session } from 'hvplug/plugin-sdk';
import type { ResultInputOf, VmConfig, VmStatus } from 'hvplug/protocol';
import { normalizeConfig } from './config.js';
import type { Json } from './json.js';
import { endStrayGuests, findGuest } from './guest-record.js';
import { isRunning } from './proc.js';
import { readSnapshot } from './snapshot.js';
import { vmState } from './state.js';
import { SimVm, type VmInit } from './vm.js';

type VmResult = ResultInputOf<'vm/create'>;

/** The plugin's VMs: brings them up (create, restore, recover), finds them, lets them go. */
export class Vmm {
  private session: Session | undefined;
  private readonly vms = new Map<string, SimVm>();
  /** Ids being brought up, so that two calls cannot both create the same VM. */
  private readonly pending = new Set<string>();

  async init(session: Session): Promise<void> {
    this.session = session;
    await mkdir(session.init.runtimeDir, { recursive: true, mode: 0o700 });
  }

  private get emit(): Session['emit'] {
    if (!this.session) throw new Error('not initialized');
    const session = this.session;
    return (event) => session.emit(event);
  }

  get(vmId: string): SimVm {
    const vm = this.vms.get(vmId);
    if (!vm) throw errors.vmNotFound(vmId);
    return vm;
  }

  /** The status the SDK checks a call against the state machine with; undefined for a VM this process does not know. */
  statusOf(vmId: string): VmStatus | undefined {
    return this.vms.get(vmId)?.status;
  }

  /** A VM using the file as a disk, for image/delete to refuse pulling it from under a guest. */
  userOf(path: string): SimVm | undefined {
    return [...this.vms.values()].find((vm) => vm.usesFile(path));
  }

  private paths(vmId: string): Pick<VmInit, 'dir' | 'consolePath' | 'agentSocketPath'> {
    const dir = join(this.session?.init.runtimeDir ?? '/nonexistent', vmId);
    return { dir, consolePath: join(dir, 'console.log'), agentSocketPath: join(dir, 'agent.sock') };
  }

  /** Reserves the id for the duration of `bringUp`, which returns the VM to register. */
  private async bringUp(vmId: string, bringUp: () => Promise<{ vm: SimVm; result: VmResult }>): Promise<VmResult> {
    if (this.vms.has(vmId) || this.pending.has(vmId)) throw errors.alreadyExists(vmId);
    this.pending.add(vmId);
    try {
      const { vm, result } = await bringUp();
      this.vms.set(vmId, vm);
      return result;
    } finally {
      this.pending.delete(vmId);
    }
  }

  /** A VM in status created, with its runtime directory and (empty) console log in place. */
  private async newVm(
    vmId: string,
    config: Awaited<ReturnType<typeof normalizeConfig>>['config'],
    settings: Awaited<ReturnType<typeof normalizeConfig>>['settings'],
    size: { vcpus: number; memoryMiB: number; devices: VmConfig['devices'] },
  ): Promise<SimVm> {
    const paths = this.paths(vmId);
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
    await writeFile(paths.consolePath, '', { flag: 'a' });
    return new SimVm({ vmId, config, settings, ...paths, emit: this.emit, status: 'created', ...size, lastExit: null });
  }

  async create(vmId: string, input: VmConfig): Promise<VmResult> {
    return this.bringUp(vmId, async () => {
      const { config, settings, warnings } = await normalizeConfig(input);
      for (const w of warnings) this.session?.log.info({ vmId }, w);
      const vm = await this.newVm(vmId, config, settings, { vcpus: config.vcpus.boot, memoryMiB: config.memory.sizeMiB, devices: config.devices });
      vm.announceCreated();
      return { vm, result: vm.result() };
    });
  }

  /**
   * A new VM from a snapshot: the snapshot's devices and sizes (the guest was saved with them), the
   * rest of the config from the caller.
   */
  async restore(vmId: string, input: VmConfig, path: string, ctx: CallContext): Promise<VmResult> {
    return this.bringUp(vmId, async () => {
      ctx.progress('reading the snapshot', 5);
      const snap = await readSnapshot(path);
      const { config, settings } = await normalizeConfig({ ...input, devices: snap.config.devices });
      const maxVcpus = config.vcpus.max ?? config.vcpus.boot;
      const maxMiB = config.memory.maxMiB ?? config.memory.sizeMiB;
      if (snap.vcpus > maxVcpus || snap.memoryMiB > maxMiB) {
        throw errors.invalidConfig([
          { path: snap.vcpus > maxVcpus ? ['vcpus', 'max'] : ['memory', 'maxMiB'], message: `the snapshot has ${snap.vcpus} vCPUs and ${snap.memoryMiB} MiB, more than the config allows` },
        ]);
      }
      const vm = await this.newVm(vmId, config, settings, { vcpus: snap.vcpus, memoryMiB: snap.memoryMiB, devices: snap.config.devices });
      return { vm, result: await vm.startRestored(snap.nextTick, ctx) };
    });
  }

  /** Takes a VM back from the state an earlier plugin process returned; status lost when its guest is gone. */
  async recover(vmId: string, input: VmConfig, raw: Json): Promise<VmResult> {
    const decoded = vmState.decode(raw, 'vm/recover');
    const known = this.vms.get(vmId);
    if (known) {
      // Recovering a VM this process already has is asking it to be watched again; a state naming
      // another live guest under the same id is a different VM.
      const ours = known.state().guest;
      const other = decoded.guest && !(ours?.pid === decoded.guest.pid && ours.startTime === decoded.guest.startTime) && isRunning(decoded.guest);
      if (other) throw errors.alreadyExists(vmId);
      await known.reconnect();
      return known.result();
    }
    return this.bringUp(vmId, async () => {
      const { config, settings } = await normalizeConfig(input);
      // Synchronous: it almost always exists already, and a re-attach of many VMs should not queue a
      // thread-pool round trip for each.
      mkdirSync(decoded.dir, { recursive: true, mode: 0o700 });
      const vm = new SimVm({
        vmId,
        config,
        settings,
        dir: decoded.dir,
        consolePath: decoded.consolePath,
        agentSocketPath: decoded.agentSocketPath,
        emit: this.emit,
        status: decoded.status,
        vcpus: decoded.vcpus,
        memoryMiB: decoded.memoryMiB,
        devices: decoded.devices,
        lastExit: decoded.lastExit,
      });
      await vm.recoverGuest(decoded.guest, () => findGuest(decoded.dir, decoded.agentSocketPath));
      return { vm, result: vm.result() };
    });
  }

  /** Deleting a VM nobody knows succeeds: the result the caller wants is already there. */
  async delete(vmId: string): Promise<void> {
    const vm = this.vms.get(vmId);
    if (!vm) {
      // A VM this process never saw may still have begun here (a restore whose plugin process died before it
      // answered): its guest names the VM's agent socket, its files are in the VM's directory.
      const paths = this.paths(vmId);
      await endStrayGuests(paths.agentSocketPath);
      await rm(paths.dir, { recursive: true, force: true });
      return;
    }
    try {
      await vm.delete();
    } catch (err) {
      // A concurrent delete got there first.
      if (!(err instanceof PluginError && err.codeName === 'VmNotFound')) throw err;
    }
    if (this.vms.get(vmId) === vm) this.vms.delete(vmId);
  }

  /** The plugin process is going away; the VMs are not. */
  release(): void {
    for (const vm of this.vms.values()) vm.release();
  }
}

