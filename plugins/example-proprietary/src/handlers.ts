import { errors, type Handlers } from 'hvplug/plugin-sdk';
import { normalizeConfig } from './config.js';
import { createImage, deleteImage, ensureImage } from './images.js';
import { agentSocketOf, checkOf, configOf, infoOf, pidsOf, statsOf, threadsOf } from './vm-queries.js';
import type { Vmm } from './vmm.js';

/** The protocol's methods, each handed to the VMM; params arrive validated against the method table. */
export function handlersFor(vmm: Vmm): Handlers {
  return {
    'config/validate': async ({ config }) => {
      const { config: adjusted, warnings } = await normalizeConfig(config);
      return { config: adjusted, warnings };
    },
    'vm/create': ({ vmId, config }) => vmm.create(vmId, config),
    'vm/restore': ({ vmId, config, path }, ctx) => vmm.restore(vmId, config, path, ctx),
    'vm/recover': ({ vmId, config, state }) => vmm.recover(vmId, config, state),
    'vm/start': ({ vmId }, ctx) => vmm.get(vmId).start(ctx),
    'vm/stop': ({ vmId, force, graceMs }, ctx) => vmm.get(vmId).stop(force, graceMs, ctx.signal),
    'vm/pause': ({ vmId }) => vmm.get(vmId).pause(),
    'vm/resume': ({ vmId }) => vmm.get(vmId).resume(),
    'vm/wait': ({ vmId }, ctx) => vmm.get(vmId).wait(ctx.signal),
    'vm/save': ({ vmId, path }, ctx) => vmm.get(vmId).save(path, ctx),
    'vm/delete': async ({ vmId }) => {
      await vmm.delete(vmId);
      return {};
    },
    'vm/check': ({ vmId }) => checkOf(vmm.get(vmId)),
    'vm/disconnect': async ({ vmId }) => {
      await vmm.get(vmId).disconnect();
      return {};
    },
    'vm/info': ({ vmId }) => infoOf(vmm.get(vmId)),
    'vm/config': ({ vmId }) => ({ config: configOf(vmm.get(vmId)) }),
    'device/add': ({ vmId, device }) => vmm.get(vmId).addDevice(device),
    'device/remove': ({ vmId, deviceId }) => vmm.get(vmId).removeDevice(deviceId),
    'vm/resizeVcpus': ({ vmId, count }) => vmm.get(vmId).resizeVcpus(count),
    'vm/resizeMemory': ({ vmId, sizeMiB }) => vmm.get(vmId).resizeMemory(sizeMiB),
    'vm/console': ({ vmId }) => ({ kind: 'log', path: vmm.get(vmId).consolePath }),
    'vm/agentSocket': ({ vmId }) => agentSocketOf(vmm.get(vmId)),
    'vm/pids': ({ vmId }) => ({ pids: pidsOf(vmm.get(vmId)) }),
    'vm/threads': ({ vmId }) => ({ vcpus: threadsOf(vmm.get(vmId)) }),
    'vm/stats': ({ vmId }) => statsOf(vmm.get(vmId)),
    'image/ensure': (params) => ensureImage(params),
    'image/create': (params) => createImage(params),
    'image/delete': async ({ path }) => {
      const user = vmm.userOf(path);
      if (user && (user.status === 'running' || user.status === 'paused')) {
        throw errors.invalidState(user.id, user.status, ['created', 'stopped', 'crashed', 'lost']);
      }
      await deleteImage(path);
      return {};
    },
  };
}
