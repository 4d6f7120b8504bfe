// The plugin's VMs: brings them up (create, restore, recover), finds them, lets them go.
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errors, type CallContext, type Session } from 'hvplug/plugin-sdk';
import type { Issue, VmConfig, VmResult, VmStatus } from 'hvplug/protocol';
import { chooseAccel, readHostTscKhz } from './accel.js';
import { MACHINE_TYPES, QemuConfigError, buildQemuArgs, defaultKernelCmdline, type MachineType } from './cmdline.js';
import { buildInitramfs, findDefaultKernel, writeGuestInitrd } from './initramfs.js';
import { supportOf } from './devices.js';
import { killProcessGroup, qemuOfPidfile, QMP_SOCKET } from './process.js';
import { parseSettings, type QemuSettings } from './settings.js';
import { vmState, type LaunchInfo } from './state.js';
import { readSidecar } from './snapshot.js';
import { QemuVm } from './vm.js';

/**
 * What the default guest runs when the caller gives no script: the console is a log file, so an
 * interactive shell would wait forever for input nobody can send. It shows the guest is alive, then
 * powers off so `hvplug run` ends by itself.
 */
const DEMO_GUEST_SCRIPT = [
  'echo "hvplug guest: $(uname -sr), $(grep -c ^processor /proc/cpuinfo) vCPU(s), $(awk \'/MemTotal/ {print $2 " kB"}\' /proc/meminfo)"',
  'for i in 1 2 3 4 5; do echo "tick $i"; sleep 1; done',
  'echo "hvplug guest: powering off"',
].join('\n');

export class Vmm {
  private readonly vms = new Map<string, QemuVm>();
  private session: Session | undefined;

  init(session: Session): void {
    this.session = session;
  }

  private get emit(): Session['emit'] {
    const session = this.session;
    if (!session) throw new Error('not initialized');
    return (event) => session.emit(event);
  }

  private runDirOf(vmId: string): string {
    if (!this.session) throw new Error('not initialized');
    return join(this.session.init.runtimeDir, vmId);
  }

  get(vmId: string): QemuVm {
    const vm = this.vms.get(vmId);
    if (!vm) throw errors.vmNotFound(vmId);
    return vm;
  }

  /** The status the SDK checks a call against the state machine with; undefined for a VM this process does not know. */
  statusOf(vmId: string): VmStatus | undefined {
    return this.vms.get(vmId)?.status;
  }

  /** config/validate: the checks of vm/create without its side effects, and the defaults it applies. */
  async validate(config: VmConfig): Promise<{ config: VmConfig; warnings: string[] }> {
    const { settings, machine } = this.check(config);
    const warnings: string[] = [];
    const accel = await chooseAccel(settings.accel);
    if (settings.accel !== 'tcg') warnings.push(`accel ${settings.accel} → ${accel.accel}: ${accel.reason}`);
    if (config.kernel === undefined) warnings.push('no kernel: the newest /boot/vmlinuz-* boots with an initramfs hvplug builds');
    return { config: { ...config, machine }, warnings };
  }

  private check(config: VmConfig): { settings: QemuSettings; machine: MachineType } {
    const settings = parseSettings(config.plugin);
    if (Array.isArray(settings)) throw errors.invalidConfig(settings);
    const issues: Issue[] = [];
    const machine = (config.machine ?? 'q35') as MachineType;
    if (!MACHINE_TYPES.includes(machine)) issues.push({ path: ['machine'], message: `unknown machine type ${config.machine}; this plugin runs ${MACHINE_TYPES.join(', ')}` });
    if (config.kernel !== undefined && !existsSync(config.kernel.path)) issues.push({ path: ['kernel', 'path'], message: `kernel ${config.kernel.path} does not exist` });
    if (config.initrd !== undefined && !existsSync(config.initrd)) issues.push({ path: ['initrd'], message: `initrd ${config.initrd} does not exist` });
    if (config.initrd !== undefined && config.kernel === undefined) issues.push({ path: ['initrd'], message: 'an initrd needs a kernel' });
    if (issues.length > 0) throw errors.invalidConfig(issues);
    if (config.disk !== undefined || config.firmware !== undefined) throw errors.notSupported('vm/create', 'this plugin boots a kernel directly; disk and firmware boot are not supported');
    if (config.console === 'socket' || config.console === 'pty') throw errors.notSupported('vm/create', `console ${config.console}: this plugin writes the console to a log file`);
    for (const d of config.devices) {
      if (!supportOf(machine, d.type)?.coldplug) throw errors.notSupported('vm/create', `device ${d.id}: type ${d.type} cannot be attached on machine ${machine}`);
    }
    return { settings, machine };
  }

  /** Checks the config and works out how QEMU will run it; writes the guest's initrd into runDir. */
  private async prepare(vmId: string, config: VmConfig): Promise<QemuVm> {
    if (this.vms.has(vmId)) throw errors.alreadyExists(vmId);
    const { settings, machine } = this.check(config);

    const runDir = this.runDirOf(vmId);
    await mkdir(runDir, { recursive: true });
    let kernel = config.kernel?.path;
    let initrd = config.initrd;
    if (kernel === undefined) {
      // The default guest: the host's newest kernel and hvplug's busybox initramfs, with the caller's script.
      kernel = (await findDefaultKernel()).path;
      const base = await buildInitramfs({ cacheDir: settings.initramfsCacheDir });
      initrd = await writeGuestInitrd(base.path, join(runDir, 'initrd.img'), settings.guestScript ?? DEMO_GUEST_SCRIPT);
    }
    const accel = await chooseAccel(settings.accel);
    const tscKhz = machine === 'microvm' && accel.accel === 'tcg' ? await readHostTscKhz() : undefined;
    const cmdline = config.kernel?.cmdline ? config.kernel.cmdline : defaultKernelCmdline(machine, { tscKhz });
    const launch: LaunchInfo = {
      machine,
      accel: accel.accel,
      accelReason: accel.reason,
      kernel,
      ...(initrd === undefined ? {} : { initrd }),
      cmdline,
      vcpusBoot: config.vcpus.boot,
      vcpusMax: config.vcpus.max ?? config.vcpus.boot,
      memory: { sizeMiB: config.memory.sizeMiB, ...(config.memory.maxMiB === undefined ? {} : { maxMiB: config.memory.maxMiB }), ...(config.memory.slots === undefined ? {} : { slots: config.memory.slots }) },
      hotplugRootPorts: settings.hotplugRootPorts,
      ...(settings.cpuModel === undefined ? {} : { cpuModel: settings.cpuModel }),
      extraArgs: [...settings.extraArgs],
    };
    const vm = new QemuVm(vmId, config, QemuVm.initialState(runDir, launch, []), this.emit);
    for (const d of config.devices) vm.coldAttach(d);
    try {
      // Every problem QEMU's command line would have, reported now rather than at start.
      buildQemuArgs(vm.launchConfig({ paused: true }));
    } catch (e) {
      if (e instanceof QemuConfigError) throw errors.invalidConfig(e.issues.map((message) => ({ path: [], message })));
      throw e;
    }
    return vm;
  }

  async create(vmId: string, config: VmConfig): Promise<VmResult> {
    const vm = await this.prepare(vmId, config);
    this.vms.set(vmId, vm);
    vm.emit({ type: 'created' });
    return vm.result();
  }

  async restore(vmId: string, config: VmConfig, path: string, ctx: CallContext): Promise<VmResult> {
    if (!existsSync(path)) throw errors.invalidConfig([{ path: ['path'], message: `snapshot ${path} does not exist` }]);
    const vm = await this.prepare(vmId, config);
    const sidecar = await readSidecar(path);
    this.vms.set(vmId, vm);
    vm.emit({ type: 'created' });
    try {
      return await vm.restoreFrom(path, sidecar, ctx);
    } catch (e) {
      await vm.destroy().catch(() => undefined);
      this.vms.delete(vmId);
      throw e;
    }
  }

  async recover(vmId: string, config: VmConfig, raw: unknown): Promise<VmResult> {
    const state = vmState.decode(raw, 'vm/recover');
    this.vms.get(vmId)?.release();
    const vm = new QemuVm(vmId, config, state, this.emit);
    this.vms.set(vmId, vm);
    await vm.reattach();
    return vm.result();
  }

  async delete(vmId: string): Promise<void> {
    const vm = this.vms.get(vmId);
    if (!vm) return this.deleteUnknown(vmId);
    await vm.destroy();
    await vm.endUnrecorded();
    this.vms.delete(vmId);
    await rm(vm.state.runDir, { recursive: true, force: true });
  }

  /**
   * vm/delete of a VM this process does not know: what a vm/create or vm/restore cut short (its host died before
   * the answer, so the host has no state to recover it with) may have left under the VM's id, a QEMU found by its
   * pidfile (checked to be that VM's QEMU) and the run directory, goes; deleting nothing succeeds.
   */
  private async deleteUnknown(vmId: string): Promise<void> {
    const runDir = this.runDirOf(vmId);
    const pid = await qemuOfPidfile(runDir, QMP_SOCKET);
    if (pid !== undefined) await killProcessGroup(pid, { graceMs: 1_000 });
    await rm(runDir, { recursive: true, force: true });
  }

  /** Plugin shutdown: let go of every QMP connection; the VMs keep running. */
  release(): void {
    for (const vm of this.vms.values()) vm.release();
  }
}
