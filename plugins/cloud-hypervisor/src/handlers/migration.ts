// vm/receiveMigration and vm/migrate (live-migration.ts does the VMM's side). The destination is a VMM started
// with no VM, as upstream's docs/live_migration.md starts it; the source's VMM exits once the VM has gone.
import { rm } from 'node:fs/promises';
import { errors, type Handlers } from 'hvplug/plugin-sdk';
import { agentFor, configIssues } from '../config-map.js';
import { receiveVm, sendVm } from '../live-migration.js';
import { abandon, checkNew, prepareConsole, startVmm } from '../new-vm.js';
import type { Registry } from '../registry.js';
import { parseOptions } from '../settings.js';

export function migrationHandlers(reg: Registry): Handlers {
  return {
    'vm/receiveMigration': async ({ vmId, config, address }, ctx) => {
      checkNew(reg, vmId);
      const { options, issues } = parseOptions(config.plugin);
      const all = [...configIssues(config), ...issues];
      if (all.length) throw errors.invalidConfig(all);
      const paths = reg.paths(vmId);
      // The VM's CH config comes with the stream; it names the serial log and the agent socket relative to the
      // VMM's directory (inVmDir), so they are this directory's files.
      const vm = await startVmm(reg, { vmId, config, options, agent: agentFor(config.devices, options, paths), signal: ctx.signal }, prepareConsole);
      reg.add(vm);
      vm.announce('created');
      try {
        const uri = await receiveVm(vm, address, ctx.signal);
        await vm.persist();
        return { status: vm.status, state: vm.stateJson(), uri };
      } catch (err) {
        reg.delete(vmId);
        await abandon(vm);
        throw err;
      }
    },

    'vm/migrate': async ({ vmId, uri, tls }, ctx) => {
      // Cloud Hypervisor's own TLS for migration (tls_dir) is not done: a destination that takes TLS only would cut a
      // plaintext stream, so nothing is sent.
      if (tls === true) throw errors.notSupported('vm/migrate', 'the destination takes the stream in TLS only; this plugin sends it in plaintext');
      const vm = reg.require(vmId);
      const done = await vm.exclusive(async () => {
        vm.reattach();
        // A paused VM arrives paused (CompletePaused) and the destination never announces it running.
        vm.require(['running']);
        return sendVm(vm, uri, ctx);
      }, ctx.signal);
      vm.forget();
      reg.delete(vmId);
      await vm.settled();
      await rm(vm.paths.dir, { recursive: true, force: true });
      return done;
    },
  };
}
