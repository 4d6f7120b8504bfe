// vm/create, vm/start, vm/pause, vm/resume, vm/stop, vm/delete, vm/wait: each checks the VM's status
// first (InvalidState without a call to the VMM when the plugin knows the answer), makes the call, then
// reads the event monitor so the events of the call reach the host before its result.
import { errors, type Handlers } from 'hvplug/plugin-sdk';
import { chCall } from '../errors.js';
import { configIssues, toChConfig } from '../config-map.js';
import { parseOptions } from '../settings.js';
import type { Registry } from '../registry.js';
import { removeOrphan } from '../vm-dir.js';
import { abandon, checkNew, prepareConsole, startVmm } from '../new-vm.js';

export function lifecycleHandlers(reg: Registry): Handlers {
  return {
    'vm/create': async ({ vmId, config }, ctx) => {
      checkNew(reg, vmId);
      const { options, issues } = parseOptions(config.plugin);
      const all = [...configIssues(config), ...issues];
      if (all.length) throw errors.invalidConfig(all);
      const paths = reg.paths(vmId);
      const mapped = toChConfig(config, options, paths);
      const vm = await startVmm(reg, { vmId, config, options, agent: mapped.agent, signal: ctx.signal }, prepareConsole);
      try {
        await chCall(() => vm.client.createVm(mapped.body, { signal: ctx.signal }));
      } catch (err) {
        await abandon(vm);
        throw err;
      }
      reg.add(vm);
      await vm.sync();
      vm.announce('created');
      await vm.persist();
      return { status: vm.status, state: vm.stateJson() };
    },

    'vm/start': async ({ vmId }, ctx) => {
      const vm = reg.require(vmId);
      return vm.exclusive(async () => {
        vm.reattach();
        vm.require(['created']);
        ctx.progress('booting', 10);
        await chCall(() => vm.client.bootVm({ signal: ctx.signal, timeoutMs: 110_000 }));
        await vm.sync();
        // The VMM writes vm/booted before it answers; should a VMM not, the call's success says enough.
        if (vm.status === 'created') vm.announce('running');
        ctx.progress('booted', 100);
        await vm.persist();
        return { status: vm.status, state: vm.stateJson() };
      }, ctx.signal);
    },

    'vm/pause': async ({ vmId }, ctx) => {
      const vm = reg.require(vmId);
      return vm.exclusive(async () => {
        vm.reattach();
        vm.require(['running']);
        await chCall(() => vm.client.pauseVm({ signal: ctx.signal }));
        await vm.sync();
        if (vm.status === 'running') vm.announce('paused');
        return vm.statusResult();
      }, ctx.signal);
    },

    'vm/resume': async ({ vmId }, ctx) => {
      const vm = reg.require(vmId);
      return vm.exclusive(async () => {
        vm.reattach();
        vm.require(['paused']);
        await chCall(() => vm.client.resumeVm({ signal: ctx.signal }));
        await vm.sync();
        if (vm.status === 'paused') vm.announce('resumed');
        return vm.statusResult();
      }, ctx.signal);
    },

    // vm/stop and vm/delete do not queue behind the VM's other calls: a call stuck on a hung VMM must not
    // hold back the one that ends it (and that call then fails, as its VMM is gone).
    'vm/stop': async ({ vmId, force, graceMs }) => {
      const vm = reg.require(vmId);
      // Stopping a VM whose VMM is gone changes nothing: stopped stays stopped, crashed and lost say why.
      if (vm.live) await vm.terminate(graceMs, force);
      return { status: vm.status, state: vm.stateJson() };
    },

    'vm/delete': async ({ vmId }) => {
      const vm = reg.get(vmId);
      if (!vm) {
        // Unknown here, but perhaps a VM of an earlier plugin process that nobody recovered.
        await removeOrphan(reg.paths(vmId), vmId);
        return {};
      }
      await vm.terminate(3_000, true);
      reg.delete(vmId);
      await abandon(vm);
      return {};
    },

    'vm/wait': async ({ vmId }, ctx) => reg.require(vmId).wait(ctx.signal),
  };
}
