import type { Handlers } from 'hvplug/plugin-sdk';
import { createImage, deleteImage, ensureImage } from './images.js';
import { infoOf, pidsOf, statsOf } from './queries.js';
import type { Vmm } from './vmm.js';

/** The protocol's methods, each handed to the VMM; params arrive validated against the method table. */
export function handlersFor(vmm: Vmm): Handlers {
  return {
    'config/validate': ({ config }) => vmm.validate(config),
    'vm/create': ({ vmId, config }) => vmm.create(vmId, config),
    'vm/restore': ({ vmId, config, path }, ctx) => vmm.restore(vmId, config, path, ctx),
    'vm/recover': ({ vmId, config, state }) => vmm.recover(vmId, config, state),
    'vm/start': ({ vmId }, ctx) => vmm.get(vmId).start(ctx),
    'vm/stop': ({ vmId, force, graceMs }) => vmm.get(vmId).stop(force, graceMs),
    'vm/pause': ({ vmId }) => vmm.get(vmId).pause(),
    'vm/resume': ({ vmId }) => vmm.get(vmId).resume(),
    'vm/wait': ({ vmId }, ctx) => vmm.get(vmId).wait(ctx.signal),
    'vm/save': ({ vmId, path }, ctx) => vmm.get(vmId).save(path, ctx),
    'vm/delete': async ({ vmId }) => {
      await vmm.delete(vmId);
      return {};
    },
    'vm/check': ({ vmId }) => vmm.get(vmId).check(),
    'vm/disconnect': ({ vmId }) => {
      vmm.get(vmId).disconnect();
      return {};
    },
    'vm/info': ({ vmId }) => infoOf(vmm.get(vmId)),
    'vm/config': ({ vmId }) => ({ config: vmm.get(vmId).currentConfig() }),
    'device/add': ({ vmId, device }) => vmm.get(vmId).addDevice(device),
    'device/remove': ({ vmId, deviceId }, ctx) => vmm.get(vmId).removeDevice(deviceId, ctx.signal),
    'vm/resizeVcpus': ({ vmId, count }) => vmm.get(vmId).resizeVcpus(count),
    'vm/resizeMemory': ({ vmId, sizeMiB }) => vmm.get(vmId).resizeMemory(sizeMiB),
    'vm/console': ({ vmId }) => ({ kind: 'log', path: vmm.get(vmId).state.consoleLog }),
    'vm/pids': ({ vmId }) => ({ pids: pidsOf(vmm.get(vmId)) }),
    'vm/threads': async ({ vmId }) => ({ vcpus: await vmm.get(vmId).threads() }),
    'vm/stats': ({ vmId }) => statsOf(vmm.get(vmId)),
    'image/ensure': (params) => ensureImage(params),
    'image/create': (params) => createImage(params),
    'image/delete': async ({ path }) => {
      await deleteImage(path);
      return {};
    },
  };
}
