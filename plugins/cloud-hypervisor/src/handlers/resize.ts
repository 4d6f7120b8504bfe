// vm/resizeVcpus and vm/resizeMemory through vm.resize, on a booted VM (the documented prerequisite).
// Cloud Hypervisor adds and removes vCPUs up to the max_vcpus the VM was created with (removal needs the
// guest to let go of them); memory grows into the hotplug region (vcpus/memory max of the config), and
// shrinks only with virtio-mem, never below the boot size. The plugin refuses what the VMM would refuse,
// or silently ignore (an ACPI shrink answers 204 and changes nothing), before calling.
import { errors, type Handlers } from 'hvplug/plugin-sdk';
import { chCall } from '../errors.js';
import type { Registry } from '../registry.js';

const MiB = 1024 * 1024;

export function resizeHandlers(reg: Registry): Handlers {
  return {
    'vm/resizeVcpus': async ({ vmId, count }, ctx) => {
      const vm = reg.require(vmId);
      return vm.exclusive(async () => {
        vm.reattach();
        vm.require(['running']);
        const max = vm.config.vcpus.max ?? vm.config.vcpus.boot;
        if (count > max) throw errors.invalidConfig([{ path: ['count'], message: `VM ${vmId} was created with at most ${max} vCPUs (vcpus.max)` }]);
        await chCall(() => vm.client.resizeVm({ desired_vcpus: count }, { signal: ctx.signal }));
        await vm.sync();
        vm.config = { ...vm.config, vcpus: { ...vm.config.vcpus, boot: count } };
        await vm.persist();
        return { vcpus: count };
      }, ctx.signal);
    },

    'vm/resizeMemory': async ({ vmId, sizeMiB }, ctx) => {
      const vm = reg.require(vmId);
      return vm.exclusive(async () => {
        vm.reattach();
        vm.require(['running']);
        const { memory } = vm.config;
        const max = memory.maxMiB ?? memory.sizeMiB;
        if (sizeMiB > max) throw errors.invalidConfig([{ path: ['sizeMiB'], message: `VM ${vmId} was created with at most ${max} MiB (memory.maxMiB)` }]);
        if (sizeMiB < memory.sizeMiB && vm.options.memoryHotplug === 'acpi') {
          throw errors.notSupported('vm/resizeMemory', 'Cloud Hypervisor cannot take memory back with ACPI hotplug: create the VM with plugin.memoryHotplug "virtio-mem"');
        }
        if (sizeMiB < vm.bootMemoryMiB) throw errors.notSupported('vm/resizeMemory', `virtio-mem cannot shrink the VM below its boot size of ${vm.bootMemoryMiB} MiB`);
        await chCall(() => vm.client.resizeVm({ desired_ram: sizeMiB * MiB }, { signal: ctx.signal }));
        await vm.sync();
        vm.config = { ...vm.config, memory: { ...memory, sizeMiB } };
        await vm.persist();
        return { memoryMiB: sizeMiB };
      }, ctx.signal);
    },
  };
}
