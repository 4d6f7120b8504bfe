// The handler of every method the plugin serves, one module per area under handlers/.
import type { Handlers } from 'hvplug/plugin-sdk';
import { deviceHandlers } from './handlers/devices.js';
import { inspectHandlers } from './handlers/inspect.js';
import { lifecycleHandlers } from './handlers/lifecycle.js';
import { migrationHandlers } from './handlers/migration.js';
import { recoverHandlers } from './handlers/recover.js';
import { resizeHandlers } from './handlers/resize.js';
import { snapshotHandlers } from './handlers/snapshot.js';
import { validateHandlers } from './handlers/validate.js';
import type { Registry } from './registry.js';

export function handlersFor(registry: Registry): Handlers {
  return {
    ...validateHandlers(registry),
    ...lifecycleHandlers(registry),
    ...recoverHandlers(registry),
    ...snapshotHandlers(registry),
    ...deviceHandlers(registry),
    ...resizeHandlers(registry),
    ...inspectHandlers(registry),
    ...migrationHandlers(registry),
  };
}
