// Chooses between KVM and TCG. /dev/kvm being openable is not enough: under a nested paravirtual
// hypervisor (PVM) it exists and works for simple programs but stock guest kernels hang, and there the
// CPU flags lack vmx/svm. So `auto` takes KVM only when the device opens read-write AND the flags show
// hardware virtualization; otherwise TCG, which is slow but always correct.
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';

export type AccelRequest = 'kvm' | 'tcg' | 'auto';
export type Accel = 'kvm' | 'tcg';

export interface AccelChoice {
  readonly accel: Accel;
  readonly requested: AccelRequest;
  /** One sentence for vm/info and logs: why this accelerator. */
  readonly reason: string;
}

export interface HostFacts {
  /** /dev/kvm can be opened read-write by this process; the string is why not. */
  readonly kvmDevice: true | string;
  /** The CPU flags list vmx (Intel VT-x) or svm (AMD-V). */
  readonly hardwareVirt: 'vmx' | 'svm' | null;
}

export interface ProbeOptions {
  readonly kvmDevice?: string;
  readonly cpuinfo?: string;
}

/** The `flags` line of /proc/cpuinfo names vmx or svm, whichever it has. */
export function hardwareVirtFlag(cpuinfo: string): 'vmx' | 'svm' | null {
  const line = cpuinfo.split('\n').find((l) => /^flags\s*:/.test(l));
  if (!line) return null;
  const flags = new Set(line.slice(line.indexOf(':') + 1).trim().split(/\s+/));
  if (flags.has('vmx')) return 'vmx';
  if (flags.has('svm')) return 'svm';
  return null;
}

/**
 * The host's TSC rate in kHz as /proc/cpuinfo reports it ("cpu MHz" of the first CPU). Under TCG the
 * guest's TSC ticks at the host's rate; a microvm guest, which has no HPET or ACPI PM timer to
 * calibrate against, needs it given (tsc_early_khz=) or it can hang at boot on a busy host.
 */
export function hostTscKhz(cpuinfo: string): number | undefined {
  const m = cpuinfo.match(/^cpu MHz\s*:\s*([0-9.]+)/m);
  const mhz = m?.[1] === undefined ? Number.NaN : Number.parseFloat(m[1]);
  return Number.isFinite(mhz) && mhz > 0 ? Math.round(mhz * 1000) : undefined;
}

export async function readHostTscKhz(cpuinfoPath = '/proc/cpuinfo'): Promise<number | undefined> {
  return hostTscKhz(await readFile(cpuinfoPath, 'utf8').catch(() => ''));
}

export async function probeHost(opts: ProbeOptions = {}): Promise<HostFacts> {
  const dev = opts.kvmDevice ?? '/dev/kvm';
  const kvmDevice = await access(dev, constants.R_OK | constants.W_OK).then(
    () => true as const,
    (e: NodeJS.ErrnoException) => `${dev}: ${e.code ?? String(e)}`,
  );
  const cpuinfo = await readFile(opts.cpuinfo ?? '/proc/cpuinfo', 'utf8').catch(() => '');
  return { kvmDevice, hardwareVirt: hardwareVirtFlag(cpuinfo) };
}

/** Pure decision from the facts, so every branch is testable without the hardware. */
export function decideAccel(requested: AccelRequest, facts: HostFacts): AccelChoice {
  if (requested === 'tcg') return { accel: 'tcg', requested, reason: 'tcg requested' };
  if (requested === 'kvm') {
    const caveat = facts.kvmDevice !== true ? ` (warning: ${facts.kvmDevice})` : facts.hardwareVirt ? '' : ' (warning: CPU flags show neither vmx nor svm)';
    return { accel: 'kvm', requested, reason: `kvm requested${caveat}` };
  }
  if (facts.kvmDevice !== true) return { accel: 'tcg', requested, reason: `auto: KVM unusable (${facts.kvmDevice})` };
  if (!facts.hardwareVirt) {
    return { accel: 'tcg', requested, reason: 'auto: /dev/kvm is usable but the CPU flags show neither vmx nor svm (nested or paravirtual KVM hangs stock guest kernels)' };
  }
  return { accel: 'kvm', requested, reason: `auto: /dev/kvm is usable and the CPU has ${facts.hardwareVirt}` };
}

export async function chooseAccel(requested: AccelRequest, opts: ProbeOptions = {}): Promise<AccelChoice> {
  if (requested === 'tcg') return decideAccel(requested, { kvmDevice: 'not probed', hardwareVirt: null });
  return decideAccel(requested, await probeHost(opts));
}
