// The plugin's definition: what it offers, and its handlers on the VMs it serves.
import { VmRegistry, type PluginDefinition } from 'hvplug/plugin-sdk';
import { deviceCapabilities } from './device-map.js';
import { handlersFor, type QemuPluginOptions } from './handlers.js';
import { qemuSettings } from './settings.js';
import type { QemuVm } from './vm.js';

export const PLUGIN_VERSION = '0.1.0';

export function qemuPlugin(opts: QemuPluginOptions = {}): PluginDefinition {
  const vms = new VmRegistry<QemuVm>();
  return {
    info: {
      name: 'qemu',
      version: PLUGIN_VERSION,
      vendor: 'hvplug',
      description: 'qemu-system-x86_64 driven over QMP: q35 with hotplug, or microvm.',
    },
    capabilities: {
      devices: deviceCapabilities(),
      machines: { q35: { hotplug: true }, microvm: { hotplug: false } },
      // vhost-user net would need guest memory shared with the backend, which the plugin does not set up.
      netBackends: ['user', 'tap'],
      // A pty would need QEMU's pty chardev, whose path is known only once QEMU runs.
      consoleKinds: ['log', 'socket'],
      // Rate limits would need throttle groups; not wired yet, so not claimed.
      rateLimiter: false,
    },
    configSchema: qemuSettings.jsonSchema,
    handlers: handlersFor(vms, opts),
    vmStatus: vms.status,
    onInitialize: (session) => vms.init(session),
    // The VMs keep running: a later plugin process takes them back with vm/recover.
    onShutdown: () => {
      for (const vm of vms.values()) vm.release();
    },
  };
}
