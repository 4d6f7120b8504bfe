import { errors } from 'hvplug/plugin-sdk';
import type { ResultInputOf, VmConfig } from 'hvplug/protocol';
import { readConsole } from './guest-program.js';
import { processStats, vcpuThreads } from './inspect.js';
import { toJson, type Json } from './json.js';
import { readStat } from './proc.js';
import type { SimVm } from './vm.js';

/**
 * The read-only calls. They look at /proc and the console each time rather than trusting what the
 * plugin last did: a guest can be stopped, killed or continued by anyone with the right to signal it.
 */

export function infoOf(vm: SimVm): ResultInputOf<'vm/info'> {
  const { vcpus, memoryMiB, devices } = vm.hardware;
  return {
    vmId: vm.id,
    status: vm.status,
    pid: vm.guestPid(),
    vcpus,
    memoryMiB,
    machine: vm.config.machine,
    accel: 'simulated',
    devices: devices.map((d) => ({ id: d.id, type: d.type })),
    details: toJson({
      runtimeDir: vm.dir,
      consolePath: vm.consolePath,
      agentSocketPath: vm.agentSocketPath,
      tickMs: vm.settings.tickMs,
      watched: vm.watched,
      lastExit: vm.exit,
    }) as Record<string, Json>,
  };
}

/** The config as the plugin holds it: as created (adjusted), with the devices attached now. */
export function configOf(vm: SimVm): VmConfig {
  return { ...vm.config, devices: [...vm.hardware.devices] };
}

/** The guest agent: over vsock when the VM has a vsock device, else the guest's unix socket. */
export function agentSocketOf(vm: SimVm): ResultInputOf<'vm/agentSocket'> {
  const vsock = vm.hardware.devices.find((d) => d.type === 'vsock');
  if (vsock?.type === 'vsock') return { kind: 'vsock', cid: vsock.guestCid, port: vm.settings.agentPort };
  return { kind: 'unix', path: vm.agentSocketPath };
}

export function pidsOf(vm: SimVm): number[] {
  const pid = vm.guestPid();
  return pid === undefined ? [] : [pid];
}

export function threadsOf(vm: SimVm): { cpu: number; tid: number }[] {
  const pid = vm.guestPid();
  return pid === undefined ? [] : vcpuThreads(pid, vm.hardware.vcpus);
}

export async function statsOf(vm: SimVm): Promise<ResultInputOf<'vm/stats'>> {
  const pid = vm.guestPid();
  const { nextTick } = await readConsole(vm.consolePath, vm.consoleOffset);
  const stats = pid === undefined ? undefined : processStats(pid, nextTick === undefined ? {} : { guestNextTick: nextTick });
  if (!stats) throw errors.invalidState(vm.id, vm.status, ['running', 'paused']);
  return stats;
}

/** Responsive means: the guest process exists and is in the scheduler state its status implies. */
export function checkOf(vm: SimVm): ResultInputOf<'vm/check'> {
  if (vm.status !== 'running' && vm.status !== 'paused') {
    const ok = vm.status === 'created' || vm.status === 'stopped';
    return { ok, detail: `the VM is ${vm.status}: no guest process${ok ? ' to check' : ''}` };
  }
  const pid = vm.guestPid();
  const stat = pid === undefined ? undefined : readStat(pid);
  if (!stat) return { ok: false, detail: `the VM is ${vm.status} but its guest process is gone` };
  const expected = vm.status === 'paused' ? ['T', 't'] : ['R', 'S', 'D'];
  return {
    ok: expected.includes(stat.state),
    detail: `guest pid ${pid} in state ${stat.state}${vm.watched ? '' : ' (not watched since vm/disconnect)'}`,
  };
}
