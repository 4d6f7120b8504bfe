// The qemu-system-x86_64 argument vector for one VM, as a pure function of a small typed config.
// Devices, block nodes, netdevs and objects are passed as the same JSON objects QMP's device_add,
// blockdev-add, netdev_add and object-add take (QEMU 7.2 accepts JSON for all four options), so a
// device is described once whether it is cold-plugged here, hot-plugged later, or re-created on the
// command line of a QEMU that restores a snapshot taken after a hotplug.
import type { Accel } from './accel.js';

export const DEFAULT_QEMU_BINARY = 'qemu-system-x86_64';
export type MachineType = 'q35' | 'microvm';
export const MACHINE_TYPES: readonly MachineType[] = ['q35', 'microvm'];

/** QOM/QMP ids of what the command line creates, for callers that address them over QMP. */
export const QMP_CHARDEV_ID = 'hvplug-qmp';
export const CONSOLE_CHARDEV_ID = 'hvplug-console';
const ROOT_PORT_PREFIX = 'hvplug-rp';
export const DEFAULT_ROOT_PORTS = 4;

export type ConsoleSpec =
  /** The serial console is written to a file only. */
  | { readonly kind: 'log'; readonly logFile: string }
  /** The serial console is a unix socket QEMU listens on (one client at a time), and is logged too. */
  | { readonly kind: 'socket'; readonly socketPath: string; readonly logFile?: string }
  | { readonly kind: 'none' };

/** A JSON object as QMP takes it: {"driver": ...} for devices, {"qom-type": ...} for objects, ... */
export type QemuJsonObject = { readonly [key: string]: string | number | boolean | null | QemuJsonObject | readonly QemuJsonObject[] | readonly string[] };

export interface ColdPlug {
  readonly blockdevs?: readonly QemuJsonObject[];
  readonly netdevs?: readonly QemuJsonObject[];
  readonly objects?: readonly QemuJsonObject[];
  readonly devices?: readonly QemuJsonObject[];
}

export interface QemuLaunchConfig {
  /** Shown in `ps` and in thread names (debug-threads=on names vCPU threads "CPU <n>/TCG"). */
  readonly name?: string;
  readonly machine: MachineType;
  readonly accel: Accel;
  /** QEMU's -cpu model. Default: host under KVM; QEMU's default model under TCG (boots fastest here). */
  readonly cpuModel?: string;
  readonly kernel?: string;
  readonly initrd?: string;
  readonly cmdline?: string;
  readonly vcpus: { readonly boot: number; readonly max?: number };
  readonly memory: { readonly sizeMiB: number; readonly maxMiB?: number; readonly slots?: number };
  readonly qmpSocket: string;
  readonly console: ConsoleSpec;
  readonly pidfile?: string;
  /** Boot with the vCPUs stopped (-S): `cont` over QMP starts the guest. */
  readonly paused?: boolean;
  /** -incoming defer: the VM waits for migrate-incoming (restore from a snapshot). */
  readonly incoming?: 'defer';
  /** q35: empty PCIe root ports to hot-plug into, ids rootPortId(0..n-1). Default 4. */
  readonly hotplugRootPorts?: number;
  /** A guest reboot ends QEMU instead of rebooting (default true): the runtime decides what happens next. */
  readonly noReboot?: boolean;
  /**
   * A guest power-off stops the vCPUs instead of ending QEMU (-no-shutdown, as libvirt runs it): whoever
   * watches over QMP decides, and a power-off while nobody watches is still there to be seen.
   */
  readonly noShutdown?: boolean;
  readonly coldPlug?: ColdPlug;
  /** Appended verbatim, last. */
  readonly extraArgs?: readonly string[];
}

export class QemuConfigError extends Error {
  override readonly name = 'QemuConfigError';
  constructor(readonly issues: readonly string[]) {
    super(`invalid QEMU configuration: ${issues.join('; ')}`);
  }
}

export function rootPortId(index: number): string {
  return `${ROOT_PORT_PREFIX}${index}`;
}

export interface KernelCmdlineOptions {
  /** The guest's TSC rate (see accel.ts hostTscKhz); used on microvm under TCG. */
  readonly tscKhz?: number;
}

/** A kernel command line that suits the machine type: serial console, quiet boot, no reboot loop on panic. */
export function defaultKernelCmdline(machine: MachineType, opts: KernelCmdlineOptions = {}): string {
  // panic=-1 reboots at once on a panic, which -no-reboot turns into QEMU exiting.
  const parts = ['console=ttyS0', 'quiet', 'panic=-1'];
  if (machine === 'microvm') {
    // No PCI to probe; and no HPET or PM timer to calibrate the TSC against, which under TCG on a
    // busy host makes the calibration against the PIT fail and the boot hang.
    parts.push('pci=off');
    if (opts.tscKhz !== undefined) parts.push(`tsc_early_khz=${opts.tscKhz}`);
  }
  return parts.join(' ');
}

export function validateLaunchConfig(cfg: QemuLaunchConfig): string[] {
  const issues: string[] = [];
  const { boot, max = boot } = cfg.vcpus;
  if (!Number.isInteger(boot) || boot < 1) issues.push(`vcpus.boot must be a positive integer, got ${boot}`);
  if (!Number.isInteger(max) || max < boot) issues.push(`vcpus.max (${max}) must be an integer >= vcpus.boot (${boot})`);
  const { sizeMiB, maxMiB = sizeMiB, slots } = cfg.memory;
  if (!Number.isInteger(sizeMiB) || sizeMiB < 16) issues.push(`memory.sizeMiB must be an integer >= 16, got ${sizeMiB}`);
  if (!Number.isInteger(maxMiB) || maxMiB < sizeMiB) issues.push(`memory.maxMiB (${maxMiB}) must be an integer >= memory.sizeMiB (${sizeMiB})`);
  if (slots !== undefined && (!Number.isInteger(slots) || slots < 0 || slots > 256)) issues.push(`memory.slots must be an integer in 0..256, got ${slots}`);
  if (maxMiB > sizeMiB && slots === 0) issues.push('memory.slots must be at least 1 when memory.maxMiB > memory.sizeMiB');
  if (cfg.initrd !== undefined && cfg.kernel === undefined) issues.push('an initrd needs a kernel');
  if (cfg.cmdline !== undefined && cfg.kernel === undefined) issues.push('a kernel command line needs a kernel');
  if (cfg.paused && cfg.incoming) issues.push('paused and incoming exclude each other: an incoming VM is already stopped');
  if (cfg.machine === 'microvm') {
    if (max > boot) issues.push('microvm has no CPU hotplug: vcpus.max must equal vcpus.boot');
    if (maxMiB > sizeMiB) issues.push('microvm has no memory hotplug: memory.maxMiB must equal memory.sizeMiB');
    if (cfg.kernel === undefined) issues.push('microvm boots a kernel directly: kernel is required');
  }
  const ports = cfg.hotplugRootPorts ?? DEFAULT_ROOT_PORTS;
  if (!Number.isInteger(ports) || ports < 0 || ports > 32) issues.push(`hotplugRootPorts must be an integer in 0..32, got ${ports}`);
  return issues;
}

/** QEMU's option syntax doubles a comma to put one inside a value (paths may contain commas). */
export function escapeOptionValue(value: string): string {
  return value.replace(/,/g, ',,');
}

function consoleArgs(c: ConsoleSpec): string[] {
  // append=on / logappend=on: a QEMU restored from a snapshot continues the same log.
  switch (c.kind) {
    case 'none':
      return ['-serial', 'none'];
    case 'log':
      return ['-chardev', `file,id=${CONSOLE_CHARDEV_ID},path=${escapeOptionValue(c.logFile)},append=on`, '-serial', `chardev:${CONSOLE_CHARDEV_ID}`];
    case 'socket': {
      const log = c.logFile === undefined ? '' : `,logfile=${escapeOptionValue(c.logFile)},logappend=on`;
      return [
        '-chardev',
        `socket,id=${CONSOLE_CHARDEV_ID},path=${escapeOptionValue(c.socketPath)},server=on,wait=off${log}`,
        '-serial',
        `chardev:${CONSOLE_CHARDEV_ID}`,
      ];
    }
  }
}

function machineArgs(cfg: QemuLaunchConfig): string[] {
  if (cfg.machine === 'microvm') {
    // ACPI stays on: without it the guest finds the virtio-mmio transports only through
    // virtio_mmio.device= (a kernel option Debian leaves out) and cannot power the machine off.
    return ['-machine', 'microvm,acpi=on,pcie=off,isa-serial=on,rtc=on'];
  }
  const ports = cfg.hotplugRootPorts ?? DEFAULT_ROOT_PORTS;
  const out = ['-machine', 'q35'];
  for (let i = 0; i < ports; i++) {
    // Distinct chassis numbers keep the (chassis, slot) pairs unique, which QEMU requires.
    out.push('-device', JSON.stringify({ driver: 'pcie-root-port', id: rootPortId(i), bus: 'pcie.0', chassis: i + 1 }));
  }
  return out;
}

function memoryArg(m: QemuLaunchConfig['memory']): string {
  const max = m.maxMiB ?? m.sizeMiB;
  if (max === m.sizeMiB) return `size=${m.sizeMiB}M`;
  return `size=${m.sizeMiB}M,slots=${m.slots ?? 8},maxmem=${max}M`;
}

/** The arguments after the binary's name. Throws QemuConfigError listing every problem found. */
export function buildQemuArgs(cfg: QemuLaunchConfig): string[] {
  const issues = validateLaunchConfig(cfg);
  if (issues.length > 0) throw new QemuConfigError(issues);
  const args = ['-nodefaults', '-no-user-config', '-display', 'none'];
  if (cfg.name !== undefined) args.push('-name', `${escapeOptionValue(cfg.name)},debug-threads=on`);
  args.push(...machineArgs(cfg));
  args.push('-accel', cfg.accel);
  const cpu = cfg.cpuModel ?? (cfg.accel === 'kvm' ? 'host' : undefined);
  if (cpu !== undefined) args.push('-cpu', cpu);
  const { boot, max = boot } = cfg.vcpus;
  args.push('-smp', `cpus=${boot},maxcpus=${max}`);
  args.push('-m', memoryArg(cfg.memory));
  if (cfg.kernel !== undefined) args.push('-kernel', cfg.kernel);
  if (cfg.initrd !== undefined) args.push('-initrd', cfg.initrd);
  if (cfg.kernel !== undefined) args.push('-append', cfg.cmdline ?? defaultKernelCmdline(cfg.machine));
  args.push('-chardev', `socket,id=${QMP_CHARDEV_ID},path=${escapeOptionValue(cfg.qmpSocket)},server=on,wait=off`);
  args.push('-mon', `chardev=${QMP_CHARDEV_ID},mode=control`);
  args.push(...consoleArgs(cfg.console));
  if (cfg.pidfile !== undefined) args.push('-pidfile', cfg.pidfile);
  if (cfg.noReboot ?? true) args.push('-no-reboot');
  if (cfg.noShutdown) args.push('-no-shutdown');
  if (cfg.paused) args.push('-S');
  if (cfg.incoming) args.push('-incoming', cfg.incoming);
  const cp = cfg.coldPlug ?? {};
  // Order matters: objects and backends must exist before the devices that name them.
  for (const o of cp.objects ?? []) args.push('-object', JSON.stringify(o));
  for (const b of cp.blockdevs ?? []) args.push('-blockdev', JSON.stringify(b));
  for (const n of cp.netdevs ?? []) args.push('-netdev', JSON.stringify(n));
  for (const d of cp.devices ?? []) args.push('-device', JSON.stringify(d));
  args.push(...(cfg.extraArgs ?? []));
  return args;
}
