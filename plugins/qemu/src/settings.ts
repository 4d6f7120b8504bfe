// The QEMU plugin's own config section (VmConfig.plugin), declared once: the SDK derives the parser and the
// JSON Schema published at initialize from it.
import * as z from 'zod';
import { settings } from 'hvplug/plugin-sdk';

const Settings = z.strictObject({
  accel: z.enum(['kvm', 'tcg', 'auto']).default('tcg').describe("Default tcg: on these hosts KVM exists but hangs stock guests; auto probes (accel.ts)."),
  guestScript: z.string().optional().describe('Run in the default guest after init (busybox sh); the guest powers off when it ends.'),
  hotplugRootPorts: z.number().int().min(0).max(32).default(4).describe('q35: empty PCIe root ports to hot-plug into.'),
  cpuModel: z.string().optional(),
  extraArgs: z.array(z.string()).default([]).describe("Appended to QEMU's command line verbatim, last: an escape hatch for what the config cannot say."),
  initramfsCacheDir: z.string().startsWith('/', 'must be an absolute path').optional().describe('Where the default initramfs is cached; default $XDG_CACHE_HOME/hvplug/qemu.'),
});

export type QemuSettings = z.output<typeof Settings>;

export const qemuSettings = settings(Settings, { title: 'qemu plugin settings (VmConfig.plugin)' });
