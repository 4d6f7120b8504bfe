// The QEMU plugin's own config section (VmConfig.plugin): parsed by hand against a small JSON Schema
// that is also declared at initialize, so the host can show and check it before a call.
import type { Issue, Json } from 'hvplug/protocol';
import type { AccelRequest } from './accel.js';

export interface QemuSettings {
  /** Default 'tcg': on these hosts KVM exists but hangs stock guests; 'auto' probes (accel.ts). */
  readonly accel: AccelRequest;
  /** Run in the default guest after init (busybox sh); the guest powers off when it ends. */
  readonly guestScript?: string;
  /** q35: empty PCIe root ports to hot-plug into. */
  readonly hotplugRootPorts: number;
  readonly cpuModel?: string;
  /** Appended to QEMU's command line verbatim, last: an escape hatch for what the config cannot say. */
  readonly extraArgs: readonly string[];
  /** Where the default initramfs is cached; default $XDG_CACHE_HOME/hvplug/qemu. */
  readonly initramfsCacheDir?: string;
}

export const SETTINGS_SCHEMA: Record<string, Json> = {
  type: 'object',
  additionalProperties: false,
  properties: {
    accel: { enum: ['kvm', 'tcg', 'auto'], default: 'tcg' },
    guestScript: { type: 'string' },
    hotplugRootPorts: { type: 'integer', minimum: 0, maximum: 32, default: 4 },
    cpuModel: { type: 'string' },
    extraArgs: { type: 'array', items: { type: 'string' } },
    initramfsCacheDir: { type: 'string', pattern: '^/' },
  },
};

const KNOWN = new Set(Object.keys(SETTINGS_SCHEMA.properties as Record<string, Json>));

export function parseSettings(raw: Readonly<Record<string, Json>>): QemuSettings | Issue[] {
  const issues: Issue[] = [];
  const bad = (key: string, message: string): void => void issues.push({ path: ['plugin', key], message });
  for (const k of Object.keys(raw)) if (!KNOWN.has(k)) bad(k, `unknown setting (known: ${[...KNOWN].join(', ')})`);
  const { accel = 'tcg', guestScript, hotplugRootPorts = 4, cpuModel, extraArgs = [], initramfsCacheDir } = raw;
  if (accel !== 'kvm' && accel !== 'tcg' && accel !== 'auto') bad('accel', 'must be kvm, tcg or auto');
  if (guestScript !== undefined && typeof guestScript !== 'string') bad('guestScript', 'must be a string');
  if (typeof hotplugRootPorts !== 'number' || !Number.isInteger(hotplugRootPorts) || hotplugRootPorts < 0 || hotplugRootPorts > 32) {
    bad('hotplugRootPorts', 'must be an integer in 0..32');
  }
  if (cpuModel !== undefined && typeof cpuModel !== 'string') bad('cpuModel', 'must be a string');
  if (!Array.isArray(extraArgs) || !extraArgs.every((a) => typeof a === 'string')) bad('extraArgs', 'must be an array of strings');
  if (initramfsCacheDir !== undefined && (typeof initramfsCacheDir !== 'string' || !initramfsCacheDir.startsWith('/'))) {
    bad('initramfsCacheDir', 'must be an absolute path');
  }
  if (issues.length > 0) return issues;
  return {
    accel: accel as AccelRequest,
    guestScript: guestScript as string | undefined,
    hotplugRootPorts: hotplugRootPorts as number,
    cpuModel: cpuModel as string | undefined,
    extraArgs: extraArgs as string[],
    initramfsCacheDir: initramfsCacheDir as string | undefined,
  };
}
