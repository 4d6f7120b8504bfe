// What vm/create, vm/restore and config/validate share: a config checked against what this plugin can run, and
// how QEMU will run it (accelerator, kernel, the default guest's initrd written into the VM's run directory).
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { errors, type EventInput } from 'hvplug/plugin-sdk';
import type { Issue, VmConfig } from 'hvplug/protocol';
import { chooseAccel, readHostTscKhz } from './accel.js';
import { MACHINE_TYPES, QemuConfigError, buildQemuArgs, defaultKernelCmdline, type MachineType } from './cmdline.js';
import { supportOf } from './device-map.js';
import { coldAttach } from './devices.js';
import { buildInitramfs, findDefaultKernel, writeGuestInitrd } from './initramfs.js';
import { qemuSettings, type QemuSettings } from './settings.js';
import type { LaunchInfo } from './state.js';
import { CONSOLE_SOCKET, QemuVm } from './vm.js';

/**
 * What the default guest runs when the caller gives no script and the console is a log file: an
 * interactive shell would wait forever for input nobody can send. It shows the guest is alive, then
 * powers off so `hvplug run` ends by itself. On a socket console the default guest is the shell.
 */
const DEMO_GUEST_SCRIPT = [
  'echo "hvplug guest: $(uname -sr), $(grep -c ^processor /proc/cpuinfo) vCPU(s), $(awk \'/MemTotal/ {print $2 " kB"}\' /proc/meminfo)"',
  'for i in 1 2 3 4 5; do echo "tick $i"; sleep 1; done',
  'echo "hvplug guest: powering off"',
].join('\n');

/** The checks of vm/create that need no side effect; InvalidConfig or NotSupported. */
export function checkConfig(config: VmConfig): { settings: QemuSettings; machine: MachineType } {
  const settings = qemuSettings.parse(config.plugin);
  const issues: Issue[] = [];
  const machine = (config.machine ?? 'q35') as MachineType;
  if (!MACHINE_TYPES.includes(machine)) issues.push({ path: ['machine'], message: `unknown machine type ${config.machine}; this plugin runs ${MACHINE_TYPES.join(', ')}` });
  if (config.kernel !== undefined && !existsSync(config.kernel.path)) issues.push({ path: ['kernel', 'path'], message: `kernel ${config.kernel.path} does not exist` });
  if (config.initrd !== undefined && !existsSync(config.initrd)) issues.push({ path: ['initrd'], message: `initrd ${config.initrd} does not exist` });
  if (config.initrd !== undefined && config.kernel === undefined) issues.push({ path: ['initrd'], message: 'an initrd needs a kernel' });
  if (issues.length > 0) throw errors.invalidConfig(issues);
  if (config.disk !== undefined || config.firmware !== undefined) throw errors.notSupported('vm/create', 'this plugin boots a kernel directly; disk and firmware boot are not supported');
  if (config.console === 'pty') throw errors.notSupported('vm/create', 'console pty: this plugin offers the console as a log file or a unix socket (console "socket")');
  for (const d of config.devices) {
    if (!supportOf(machine, d.type)?.coldplug) throw errors.notSupported('vm/create', `device ${d.id}: type ${d.type} cannot be attached on machine ${machine}`);
  }
  return { settings, machine };
}

/** config/validate: the checks of vm/create without its side effects, and the defaults it applies. */
export async function validateConfig(config: VmConfig): Promise<{ config: VmConfig; warnings: string[] }> {
  const { settings, machine } = checkConfig(config);
  const warnings: string[] = [];
  const accel = await chooseAccel(settings.accel);
  if (settings.accel !== 'tcg') warnings.push(`accel ${settings.accel} → ${accel.accel}: ${accel.reason}`);
  if (config.kernel === undefined) warnings.push('no kernel: the newest /boot/vmlinuz-* boots with an initramfs hvplug builds');
  return { config: { ...config, machine }, warnings };
}

/** A VM for `config`, not yet registered: the config checked, how QEMU will run it worked out, its initrd in runDir. */
export async function newVm(vmId: string, config: VmConfig, runDir: string, send: (event: EventInput) => void): Promise<QemuVm> {
  const { settings, machine } = checkConfig(config);
  await mkdir(runDir, { recursive: true });
  let kernel = config.kernel?.path;
  let initrd = config.initrd;
  if (kernel === undefined) {
    // The default guest: the host's newest kernel and hvplug's busybox initramfs, with the caller's script.
    kernel = (await findDefaultKernel()).path;
    const base = await buildInitramfs({ cacheDir: settings.initramfsCacheDir });
    const script = settings.guestScript ?? (config.console === 'socket' ? undefined : DEMO_GUEST_SCRIPT);
    initrd = await writeGuestInitrd(base.path, join(runDir, 'initrd.img'), script);
  }
  const accel = await chooseAccel(settings.accel);
  const tscKhz = machine === 'microvm' && accel.accel === 'tcg' ? await readHostTscKhz() : undefined;
  const launch: LaunchInfo = {
    machine,
    accel: accel.accel,
    accelReason: accel.reason,
    kernel,
    ...(initrd === undefined ? {} : { initrd }),
    cmdline: config.kernel?.cmdline ? config.kernel.cmdline : defaultKernelCmdline(machine, { tscKhz }),
    vcpusBoot: config.vcpus.boot,
    vcpusMax: config.vcpus.max ?? config.vcpus.boot,
    memory: { sizeMiB: config.memory.sizeMiB, ...(config.memory.maxMiB === undefined ? {} : { maxMiB: config.memory.maxMiB }), ...(config.memory.slots === undefined ? {} : { slots: config.memory.slots }) },
    hotplugRootPorts: settings.hotplugRootPorts,
    ...(settings.cpuModel === undefined ? {} : { cpuModel: settings.cpuModel }),
    extraArgs: [...settings.extraArgs],
  };
  const vm = new QemuVm(vmId, config, QemuVm.initialState(runDir, launch, [], config.console === 'socket' ? CONSOLE_SOCKET : undefined), send);
  for (const d of config.devices) coldAttach(vm, d);
  try {
    // Every problem QEMU's command line would have, reported now rather than at start.
    buildQemuArgs(vm.launchConfig({ paused: true }));
  } catch (e) {
    if (e instanceof QemuConfigError) throw errors.invalidConfig(e.issues.map((message) => ({ path: [], message })));
    throw e;
  }
  return vm;
}
