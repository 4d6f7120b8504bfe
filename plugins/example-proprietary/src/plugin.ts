import type { PluginDefinition } from 'hvplug/plugin-sdk';
import { DEVICE_SUPPORT, MACHINES } from './devices.js';
import { extensions, handlersFor } from './handlers.js';
import { Registry } from './registry.js';
import { guestSettings } from './settings.js';

export const PLUGIN_VERSION = '0.1.0';

/** The plugin as the SDK serves it: who it is, what it can do, and the handlers that do it. */
export function examplePlugin(): PluginDefinition {
  const registry = new Registry();
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
    configSchema: guestSettings.jsonSchema,
    handlers: handlersFor(registry),
    vmStatus: registry.status,
    extensions,
    onInitialize: (session) => registry.start(session),
    onShutdown: () => registry.release(),
  };
}
