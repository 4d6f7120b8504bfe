// What the plugin advertises, from what the Cloud Hypervisor API offers (spec/api.md, openapi.yaml):
// - block (vm.add-disk), net (vm.add-net, tap or vhost-user: no user-mode networking), vsock (vm.add-vsock, one per VM), virtio-fs
//   (vm.add-fs), vfio (vm.add-device) and vhost-user blk/net (vm.add-disk / vm.add-net with vhost_user):
//   cold (in the config, or vm.add-* before boot), hot (vm.add-* after boot), hot-unplug (vm.remove-device);
// - rng: only before boot (one per VM, no endpoint to add or remove it on a booted VM);
// - serial, memory and cpu are not devices in Cloud Hypervisor: the serial port is the config's console,
//   vCPUs and memory change through vm.resize (vm/resizeVcpus, vm/resizeMemory);
// - one machine type, so no `machines`; the console as a log file; rate limits applied by the VMM.
// States the API refuses (pause before boot, snapshot of a running VM, resize before boot) have no place in
// capabilities: the plugin answers them with InvalidState.
import type { PluginDefinition } from 'hvplug/plugin-sdk';

const ALL = { coldplug: true, hotplug: true, hotunplug: true };

export const CAPABILITIES: PluginDefinition['capabilities'] = {
  devices: {
    block: ALL,
    net: ALL,
    vsock: ALL,
    'virtio-fs': ALL,
    vfio: ALL,
    'vhost-user': ALL,
    rng: { coldplug: true, hotplug: false, hotunplug: false },
  },
  netBackends: ['tap', 'vhost-user'],
  machines: {},
  consoleKinds: ['log'],
  rateLimiter: true,
};
