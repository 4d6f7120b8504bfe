import type { PluginDefinition } from 'hvplug/plugin-sdk';
import { DEVICE_SUPPORT } from './devices.js';
import { extensions } from './extensions.js';
import { handlersFor } from './handlers.js';
import { MACHINES } from './machines.js';
import { SETTINGS_SCHEMA } from './settings.js';
import { Vmm } from './vmm.js';

export const PLUGIN_VERSION = '0.1.0';

/** The plugin as the SDK serves it: who it is, what it can do, and the handlers that do it. */
export function examplePlugin(): PluginDefinition {
  const vmm = new Vmm();
  return {
    info: {
      name: 'example-proprietary',
      version: PLUGIN_VERSION,
      vendor: 'hvplug example vendor',
      description: 'A simulated VMM whose guests are real processes: the reference plugin to copy.',
    },
    capabilities: {
      devices: DEVICE_SUPPORT,
      machines: MACHINES,
      consoleKinds: ['log'],
      // The simulated devices move no data, so there is nothing the VMM could rate-limit itself.
      rateLimiter: false,
    },
    configSchema: SETTINGS_SCHEMA,
    handlers: handlersFor(vmm),
    vmStatus: (vmId) => vmm.statusOf(vmId),
    extensions,
    onInitialize: (session) => vmm.init(session),
    onShutdown: () => vmm.release(),
  };
}
