// The plugin's definition: hvplug's hypervisor interface on the VMM's REST API (--api-socket) and event monitor
// (--event-monitor path=). One VMM process per VM, started detached so it outlives the plugin; a later plugin
// process takes it back with vm/recover.
import type { PluginDefinition } from 'hvplug/plugin-sdk';
import { CAPABILITIES } from './capabilities.js';
import { handlersFor } from './handlers.js';
import { vmmBinary } from './launcher.js';
import { Registry } from './registry.js';
import { CONFIG_SCHEMA } from './settings.js';

export function cloudHypervisorPlugin(): PluginDefinition {
  const registry = new Registry(() => vmmBinary());
  return {
    info: {
      name: 'cloud-hypervisor',
      version: '0.1.0',
      vendor: 'hvplug',
      description: 'Cloud Hypervisor through its REST API; one detached VMM per VM',
    },
    capabilities: CAPABILITIES,
    configSchema: CONFIG_SCHEMA,
    handlers: handlersFor(registry),
    vmStatus: (vmId) => registry.status(vmId),
    onInitialize: (session) => registry.init(session),
    onShutdown: () => registry.detachAll(),
  };
}
