// The QEMU plugin's own config section (VmConfig.plugin), declared once: the SDK derives the parser and the
// JSON Schema published at initialize from it.
import * as z from 'zod/mini';
import { settings } from 'hvplug/plugin-sdk';

const Settings = z.strictObject({
  accel: z
    ._default(z.enum(['kvm', 'tcg', 'auto']), 'tcg')
    .check(z.describe('Default tcg: on these hosts KVM exists but hangs stock guests; auto probes (accel.ts).')),
  guestScript: z.optional(z.string()).check(z.describe('Run in the default guest after init (busybox sh); the guest powers off when it ends.')),
  hotplugRootPorts: z._default(z.number().check(z.int(), z.minimum(0), z.maximum(32)), 4).check(z.describe('q35: empty PCIe root ports to hot-plug into.')),
  cpuModel: z.optional(z.string()),
  extraArgs: z
    ._default(z.array(z.string()), [])
    .check(z.describe("Appended to QEMU's command line verbatim, last: an escape hatch for what the config cannot say.")),
  initramfsCacheDir: z
    .optional(z.string().check(z.startsWith('/', 'must be an absolute path')))
    .check(z.describe('Where the default initramfs is cached; default $XDG_CACHE_HOME/hvplug/qemu.')),
});

export type QemuSettings = z.output<typeof Settings>;

export const qemuSettings = settings(Settings, { title: 'qemu plugin settings (VmConfig.plugin)' });
