// The VMs of this plugin process (the SDK's registry), and how they come into it: created, restored from a
// snapshot, or recovered from the state an earlier plugin process handed the host.
import { mkdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errors, PluginError, VmRegistry, type CallContext, type Session } from 'hvplug/plugin-sdk';
import type { Json, ResultInputOf, VmConfig } from 'hvplug/protocol';
import { normalizeConfig, type Normalized } from './config.js';
import { endStrayGuests, findGuest, isRunning } from './guest-record.js';
import { IncomingMigration } from './migration.js';
import { readSnapshot } from './snapshot.js';
import { vmState } from './state.js';
import { SimVm, type VmInit } from './vm.js';

type VmResult = ResultInputOf<'vm/create'>;

export class Registry extends VmRegistry<SimVm> {
  /** Ids being brought up, so that two calls cannot both create the same VM. */
  private readonly pending = new Set<string>();
  /** VMs waiting for their incoming migration, and where they listen for it. */
  private readonly incoming = new Map<string, IncomingMigration>();

  start(session: Session): void {
    this.init(session);
    // Synchronous, as the VM's directory and console log in newVm: a call each, far cheaper than the thread pool's
    // round trip (and, the first time, its threads' start), on the way to the handshake's and vm/create's answers.
    mkdirSync(session.init.runtimeDir, { recursive: true, mode: 0o700 });
  }

  /** A VM using the file as a disk, for image/delete to refuse pulling it from under a guest. */
  userOf(path: string): SimVm | undefined {
    return [...this.values()].find((vm) => vm.usesFile(path));
  }

  private paths(vmId: string): Pick<VmInit, 'dir' | 'consolePath' | 'agentSocketPath'> {
    const dir = join(this.session.init.runtimeDir, vmId);
    return { dir, consolePath: join(dir, 'console.log'), agentSocketPath: join(dir, 'agent.sock') };
  }

  /** Reserves the id for the duration of `bringUp`, which returns the VM to register. */
  private async bringUp(vmId: string, bringUp: () => Promise<{ vm: SimVm; result: VmResult }>): Promise<VmResult> {
    if (this.has(vmId) || this.pending.has(vmId)) throw errors.alreadyExists(vmId);
    this.pending.add(vmId);
    try {
      const { vm, result } = await bringUp();
      this.add(vm);
      return result;
    } finally {
      this.pending.delete(vmId);
    }
  }

  /** A VM in status created, with its runtime directory and (empty) console log in place. */
  private async newVm(vmId: string, { config, settings }: Normalized, size: Pick<VmInit, 'vcpus' | 'memoryMiB' | 'devices'>): Promise<SimVm> {
    const paths = this.paths(vmId);
    mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
    writeFileSync(paths.consolePath, '', { flag: 'a' });
    return new SimVm({ vmId, config, settings, ...paths, emit: this.emit, status: 'created', ...size, lastExit: null });
  }

  create(vmId: string, input: VmConfig): Promise<VmResult> {
    return this.bringUp(vmId, async () => {
      const normalized = await normalizeConfig(input);
      for (const w of normalized.warnings) this.session.log.info({ vmId }, w);
      const { config } = normalized;
      const vm = await this.newVm(vmId, normalized, { vcpus: config.vcpus.boot, memoryMiB: config.memory.sizeMiB, devices: config.devices });
      vm.announce('created');
      return { vm, result: vm.result() };
    });
  }

  /**
   * A new VM from a snapshot: the snapshot's devices and sizes (the guest was saved with them), the
   * rest of the config from the caller.
   */
  restore(vmId: string, input: VmConfig, path: string, ctx: CallContext): Promise<VmResult> {
    return this.bringUp(vmId, async () => {
      ctx.progress('reading the snapshot', 5);
      const snap = await readSnapshot(path);
      const normalized = await normalizeConfig({ ...input, devices: snap.config.devices });
      const { config } = normalized;
      const maxVcpus = config.vcpus.max ?? config.vcpus.boot;
      const maxMiB = config.memory.maxMiB ?? config.memory.sizeMiB;
      if (snap.vcpus > maxVcpus || snap.memoryMiB > maxMiB) {
        throw errors.invalidConfig([
          { path: snap.vcpus > maxVcpus ? ['vcpus', 'max'] : ['memory', 'maxMiB'], message: `the snapshot has ${snap.vcpus} vCPUs and ${snap.memoryMiB} MiB, more than the config allows` },
        ]);
      }
      const vm = await this.newVm(vmId, normalized, { vcpus: snap.vcpus, memoryMiB: snap.memoryMiB, devices: snap.config.devices });
      return { vm, result: await vm.startRestored(snap.nextTick, ctx) };
    });
  }

  /**
   * vm/receiveMigration: a VM in status created that listens for its guest's state (on a unix socket in its runtime
   * directory, or on TCP at `address`) and runs it from there once it comes.
   */
  async receiveMigration(vmId: string, input: VmConfig, address: string | undefined): Promise<ResultInputOf<'vm/receiveMigration'>> {
    let uri = '';
    const result = await this.bringUp(vmId, async () => {
      const normalized = await normalizeConfig(input);
      const { config } = normalized;
      const vm = await this.newVm(vmId, normalized, { vcpus: config.vcpus.boot, memoryMiB: config.memory.sizeMiB, devices: config.devices });
      const where = address === undefined ? { path: join(vm.dir, 'migrate.sock') } : { address };
      const listening = await IncomingMigration.listen(where, async (stream) => {
        await vm.startIncoming(stream);
        this.incoming.delete(vmId);
      });
      this.incoming.set(vmId, listening);
      uri = listening.uri;
      vm.announce('created');
      return { vm, result: vm.result() };
    });
    return { ...result, uri };
  }

  /** vm/migrate: the guest runs at the destination now, and this process forgets the VM. */
  async migrate(vmId: string, uri: string, ctx: CallContext): Promise<ResultInputOf<'vm/migrate'>> {
    const vm = this.require(vmId);
    const result = await vm.migrate(uri, ctx);
    if (this.get(vmId) === vm) this.delete(vmId);
    return result;
  }

  /** Takes a VM back from the state an earlier plugin process returned; status lost when its guest is gone. */
  async recover(vmId: string, input: VmConfig, raw: Json): Promise<VmResult> {
    const decoded = vmState.decode(raw, 'vm/recover');
    const known = this.get(vmId);
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
      const vm = new SimVm({ vmId, config, settings, emit: this.emit, ...decoded });
      await vm.recoverGuest(decoded.guest, () => findGuest(decoded.dir, decoded.agentSocketPath));
      // The host learns the status from this call's answer.
      vm.assumeAnnounced(vm.status);
      return { vm, result: vm.result() };
    });
  }

  /** Deleting a VM nobody knows succeeds: the result the caller wants is already there. */
  async deleteVm(vmId: string): Promise<void> {
    this.incoming.get(vmId)?.close();
    this.incoming.delete(vmId);
    const vm = this.get(vmId);
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
    if (this.get(vmId) === vm) this.delete(vmId);
  }

  /** The plugin process is going away; the VMs are not. */
  release(): void {
    for (const listening of this.incoming.values()) listening.close();
    this.incoming.clear();
    for (const vm of this.values()) vm.release();
  }
}
