import type { PluginDefinition } from 'hvplug/plugin-sdk';
import type { DeviceType } from 'hvplug/protocol';
import { deviceTable, type DeviceSupportRow } from './devices.js';
import { handlersFor } from './handlers.js';
import { SETTINGS_SCHEMA } from './settings.js';
import { Vmm } from './vmm.js';

export const PLUGIN_VERSION = '0.1.0';

/** Per device type, what some machine can do: microvm's limits are said by `machines` (hotplug false). */
function deviceSupport(): Partial<Record<DeviceType, DeviceSupportRow>> {
  const out: Partial<Record<DeviceType, DeviceSupportRow>> = {};
  for (const table of [deviceTable('q35'), deviceTable('microvm')]) {
    for (const [type, row] of Object.entries(table) as [DeviceType, DeviceSupportRow][]) {
      const prev = out[type];
      out[type] = prev ? { coldplug: prev.coldplug || row.coldplug, hotplug: prev.hotplug || row.hotplug, hotunplug: prev.hotunplug || row.hotunplug } : { ...row };
    }
  }
  return out;
}

export function qemuPlugin(): PluginDefinition {
  const vmm = new Vmm();
  return {
    info: {
      name: 'qemu',
      version: PLUGIN_VERSION,
      vendor: 'hvplug',
      description: 'qemu-system-x86_64 driven over QMP: q35 with hotplug, or microvm.',
    },
    capabilities: {
      devices: deviceSupport(),
      machines: { q35: { hotplug: true }, microvm: { hotplug: false } },
      // vhost-user net would need guest memory shared with the backend, which the plugin does not set up.
      netBackends: ['user', 'tap'],
      consoleKinds: ['log'],
      // Rate limits would need throttle groups; not wired yet, so not claimed.
      rateLimiter: false,
    },
    configSchema: SETTINGS_SCHEMA,
    handlers: handlersFor(vmm),
    vmStatus: (vmId) => vmm.statusOf(vmId),
    onInitialize: (session) => vmm.init(session),
    onShutdown: () => vmm.release(),
  };
}
