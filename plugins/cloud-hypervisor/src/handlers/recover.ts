// vm/recover: a new plugin process takes back a VM from the state blob (or, without one, from the copy in
// the VM's directory). The VMM is the process the blob names (pid and start time) answering vmm.ping on
// the blob's socket; vm.info says where the VM is; the event file is read on from the saved offset.
import { errors, proc, type Handlers } from 'hvplug/plugin-sdk';
import type { VmStatus } from 'hvplug/protocol';
import type { VmState as ChVmState } from '../api-types.js';
import { chCall } from '../errors.js';
import { pathsIn } from '../paths.js';
import { parseOptions } from '../settings.js';
import type { Registry } from '../registry.js';
import { parseState, readStateFile } from '../state.js';
import { ChVm } from '../vm.js';

const FROM_CH: Record<ChVmState, VmStatus> = { Created: 'created', Running: 'running', Paused: 'paused', Shutdown: 'stopped', BreakPoint: 'paused' };

export function recoverHandlers(reg: Registry): Handlers {
  return {
    'vm/recover': async ({ vmId, config, state }, ctx) => {
      const known = reg.get(vmId);
      if (known) {
        known.reattach();
        return { status: known.status, state: known.stateJson() };
      }
      const { options, issues } = parseOptions(config.plugin);
      if (issues.length) throw errors.invalidConfig(issues);
      const paths = reg.paths(vmId);
      let saved = parseState(state, vmId);
      if (typeof saved === 'string') saved = parseState(await readStateFile(paths), vmId);
      const blob = typeof saved === 'string' ? undefined : saved;
      const vm = new ChVm({
        vmId,
        paths: blob ? pathsIn(blob.dir) : paths,
        config: blob ? { ...config, devices: blob.devices } : config,
        options,
        status: blob?.status ?? 'lost',
        agent: blob?.agent ?? undefined,
        eventsOffset: blob?.eventsOffset ?? 0,
        bdfs: blob?.bdfs,
        bootMemoryMiB: blob?.bootMemoryMiB ?? config.memory.sizeMiB,
        deps: reg.deps(),
      });
      const pid = blob?.pid ?? null;
      const startTicks = blob?.startTicks ?? undefined;
      if (!blob || pid === null || !proc.isRunning(pid, startTicks)) {
        // No VMM: a VM that was stopped (or had crashed) stays so; one that should be running is lost.
        vm.status = blob && (blob.status === 'stopped' || blob.status === 'crashed') ? blob.status : 'lost';
        vm.assumeAnnounced(vm.status);
        reg.add(vm);
        return { status: vm.status, state: vm.stateJson() };
      }
      const ping = await chCall(() => vm.client.ping({ signal: ctx.signal, timeoutMs: 5_000 })).catch((err: Error) => {
        throw errors.vmmFailure(`the VMM (pid ${pid}) runs but does not answer on ${vm.paths.socket}: ${err.message}`, 'unreachable');
      });
      if (ping.pid !== undefined && ping.pid !== pid) {
        throw errors.vmmFailure(`${vm.paths.socket} is answered by pid ${ping.pid}, not by the VM's VMM (pid ${pid})`, 'wrong-vmm');
      }
      const info = await chCall(() => vm.client.vmInfo({ signal: ctx.signal }));
      vm.status = FROM_CH[info.state];
      vm.assumeAnnounced(vm.status);
      vm.attach({ pid, startTicks: startTicks ?? 0 });
      // What happened while no plugin watched: removals are applied, statuses were just read from vm.info.
      await vm.sync('catch-up');
      reg.add(vm);
      await vm.persist();
      return { status: vm.status, state: vm.stateJson() };
    },
  };
}
