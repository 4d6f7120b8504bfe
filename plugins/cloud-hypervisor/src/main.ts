// The Cloud Hypervisor plugin: hvplug's hypervisor interface on the VMM's REST API (--api-socket) and
// event monitor (--event-monitor path=). One VMM process per VM, started detached so it outlives the
// plugin; a later plugin process takes it back with vm/recover.
import { servePlugin } from 'hvplug/plugin-sdk';
import { CAPABILITIES } from './capabilities.js';
import { deviceHandlers } from './handlers/devices.js';
import { inspectHandlers } from './handlers/inspect.js';
import { lifecycleHandlers } from './handlers/lifecycle.js';
import { recoverHandlers } from './handlers/recover.js';
import { resizeHandlers } from './handlers/resize.js';
import { snapshotHandlers } from './handlers/snapshot.js';
import { validateHandlers } from './handlers/validate.js';
import { vmmBinary } from './launcher.js';
import { CONFIG_SCHEMA } from './plugin-options.js';
import { Registry } from './registry.js';

const registry = new Registry(() => vmmBinary());

servePlugin({
  info: {
    name: 'cloud-hypervisor',
    version: '0.1.0',
    vendor: 'hvplug',
    description: 'Cloud Hypervisor through its REST API; one detached VMM per VM',
  },
  capabilities: CAPABILITIES,
  configSchema: CONFIG_SCHEMA,
  handlers: {
    ...validateHandlers(registry),
    ...lifecycleHandlers(registry),
    ...recoverHandlers(registry),
    ...snapshotHandlers(registry),
    ...deviceHandlers(registry),
    ...resizeHandlers(registry),
    ...inspectHandlers(registry),
  },
  vmStatus: (vmId) => registry.status(vmId),
  onInitialize: (session) => registry.init(session),
  onShutdown: () => registry.detachAll(),
});
