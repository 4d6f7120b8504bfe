// The read-only calls and vm/disconnect: vm/info (vm.info), vm/config, vm/check (vmm.ping), vm/stats
// (vm.counters and /proc), vm/pids, vm/console, vm/agentSocket.
import { errors, proc, type Handlers } from 'hvplug/plugin-sdk';
import type { VmStatus } from 'hvplug/protocol';
import type { VmInfo as ChVmInfo } from '../api-types.js';
import { chCall } from '../errors.js';
import { sizesOf } from '../config-map.js';
import { isJsonObject, toJson, type Json } from '../json.js';
import type { Registry } from '../registry.js';
import type { ChVm } from '../vm.js';

const MiB = 1024 * 1024;

/** The VMM and what it started (the real VMM runs vCPUs as threads; the contract double has a guest process). */
function pidsOf(vm: ChVm): number[] {
  return vm.vmm ? [vm.vmm.pid, ...proc.descendants(vm.vmm.pid)] : [];
}

function requireVmm(vm: ChVm): NonNullable<ChVm['vmm']> {
  if (!vm.vmm) throw errors.invalidState(vm.vmId, vm.status, ['created', 'running', 'paused']);
  return vm.vmm;
}

/** vm.counters answers per device ("_disk0": {"read_bytes": ...}): flattened to "<device>.<counter>". */
function flatten(counters: Record<string, Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [dev, values] of Object.entries(counters)) for (const [k, v] of Object.entries(values)) out[`${dev}.${k}`] = v;
  return out;
}

export function inspectHandlers(reg: Registry): Handlers {
  return {
    'vm/info': async ({ vmId }, ctx) => {
      const vm = reg.require(vmId);
      vm.reattach();
      let ch: ChVmInfo | undefined;
      // A VMM receiving a migration answers no request until the VM is in: the plugin knows enough meanwhile.
      if (vm.live && !vm.apiBlocked) {
        await vm.sync();
        ch = await chCall(() => vm.ask(() => vm.client.vmInfo({ signal: ctx.signal })));
      }
      const chConfig = ch ? toJson(ch.config) : undefined;
      const sizes = sizesOf(isJsonObject(chConfig) ? chConfig : undefined, vm.config);
      const details: Record<string, Json> = {
        vmmState: ch?.state ?? null,
        socket: vm.paths.socket,
        eventsFile: vm.paths.events,
        vmmLog: vm.paths.log,
        maxVcpus: sizes.maxVcpus,
        pciAddresses: Object.fromEntries(vm.bdfs),
        deviceTree: toJson(ch?.device_tree ?? null),
        exit: toJson(vm.exit ?? null),
      };
      return {
        vmId,
        status: vm.status,
        pid: vm.vmm?.pid,
        vcpus: sizes.vcpus,
        memoryMiB: ch?.memory_actual_size !== undefined ? Math.round(ch.memory_actual_size / MiB) : sizes.memoryMiB,
        devices: vm.config.devices.map((d) => ({ id: d.id, type: d.type })),
        details,
      };
    },

    'vm/config': async ({ vmId }) => ({ config: reg.require(vmId).config }),

    'vm/check': async ({ vmId }, ctx) => {
      const vm = reg.require(vmId);
      vm.reattach();
      if (!vm.vmm) return { ok: false, detail: `the VM is ${vm.status}: no VMM runs` };
      const pid = vm.vmm.pid;
      if (vm.apiBlocked) return { ok: true, detail: `the VMM (pid ${pid}) waits for an incoming migration and answers no request until it is in` };
      try {
        const ping = await vm.client.ping({ signal: ctx.signal, timeoutMs: 5_000 });
        return { ok: true, detail: `cloud-hypervisor ${ping.build_version ?? ping.version} answers vmm.ping (pid ${ping.pid ?? pid})` };
      } catch (err) {
        return { ok: false, detail: (err as Error).message };
      }
    },

    'vm/stats': async ({ vmId }, ctx) => {
      const vm = reg.require(vmId);
      const vmm = requireVmm(vm);
      const pids = pidsOf(vm);
      const booted: VmStatus[] = ['running', 'paused'];
      const read = booted.includes(vm.status) ? await chCall(() => vm.ask(() => vm.client.vmCounters({ signal: ctx.signal }))) : {};
      // The VMM died during the call: the VM is crashed now, and has no stats.
      if (read === undefined) throw errors.invalidState(vm.vmId, vm.status, ['created', 'running', 'paused']);
      const counters = flatten(read);
      return {
        cpuTimeMs: pids.reduce((sum, p) => sum + proc.cpuTimeMs(p), 0),
        memoryRssBytes: pids.reduce((sum, p) => sum + proc.rssBytes(p), 0),
        uptimeMs: proc.uptimeMs(vmm.pid),
        counters,
      };
    },

    'vm/pids': async ({ vmId }) => ({ pids: pidsOf(reg.require(vmId)) }),

    'vm/console': async ({ vmId }) => {
      const vm = reg.require(vmId);
      if (vm.config.console !== 'log') throw errors.notSupported('vm/console', `VM ${vmId} was created with console "${vm.config.console}"`);
      return { kind: 'log' as const, path: vm.paths.console };
    },

    'vm/agentSocket': async ({ vmId }) => {
      const vm = reg.require(vmId);
      // Cloud Hypervisor's vsock is hybrid: the host reaches guest port P by connecting to the device's unix
      // socket and writing "CONNECT P\n".
      const own = vm.config.devices.find((d) => d.type === 'vsock');
      if (own?.type === 'vsock') return { kind: 'vsock' as const, cid: own.guestCid, port: vm.options.agent.port, path: own.socketPath ?? vm.paths.userVsock };
      if (vm.agent) return { kind: 'vsock' as const, cid: vm.agent.cid, port: vm.agent.port, path: vm.agent.socket };
      throw errors.notSupported('vm/agentSocket', `VM ${vmId} has no vsock device (plugin.agent.enabled is false and the config names none)`);
    },

    'vm/disconnect': async ({ vmId }) => {
      reg.require(vmId).detach();
      return {};
    },
  };
}
