// The protocol's methods, each handed to the registry or to one VM (params arrive validated against the method
// table), and the vendor method. The read-only calls look at /proc and the console each time rather than trusting
// what the plugin last did: a guest can be stopped, killed or continued by anyone with the right to signal it.
// A namespace import lets esbuild keep only the zod a plugin uses.
import * as z from 'zod/mini';
import { errors, proc, type ExtensionHandler, type Handlers } from 'hvplug/plugin-sdk';
import { toIssues, type Json, type ResultInputOf } from 'hvplug/protocol';
import { normalizeConfig } from './config.js';
import { readConsole } from './guest-program.js';
import { createImage, deleteImage, ensureImage } from './images.js';
import type { Registry } from './registry.js';
import type { SimVm } from './vm.js';

function infoOf(vm: SimVm): ResultInputOf<'vm/info'> {
  const { vcpus, memoryMiB, devices } = vm.hardware;
  return {
    vmId: vm.vmId,
    status: vm.status,
    pid: vm.guestPid(),
    vcpus,
    memoryMiB,
    machine: vm.config.machine,
    accel: 'simulated',
    devices: devices.map((d) => ({ id: d.id, type: d.type })),
    details: {
      runtimeDir: vm.dir,
      consolePath: vm.consolePath,
      agentSocketPath: vm.agentSocketPath,
      tickMs: vm.settings.tickMs,
      watched: vm.watched,
      lastExit: vm.exit,
    },
  };
}

/** The guest agent: over vsock when the VM has a vsock device, else the guest's unix socket. */
function agentSocketOf(vm: SimVm): ResultInputOf<'vm/agentSocket'> {
  const vsock = vm.hardware.devices.find((d) => d.type === 'vsock');
  if (vsock?.type === 'vsock') return { kind: 'vsock', cid: vsock.guestCid, port: vm.settings.agentPort };
  return { kind: 'unix', path: vm.agentSocketPath };
}

/**
 * vCPU i is the guest's i-th thread, main thread first. The guest is started with a thread pool of
 * vcpus.max threads, so every vCPU that can come online has a real host thread to be pinned.
 */
function threadsOf(vm: SimVm): { cpu: number; tid: number }[] {
  const pid = vm.guestPid();
  return pid === undefined ? [] : proc.threadIds(pid).slice(0, vm.hardware.vcpus).map((tid, cpu) => ({ cpu, tid }));
}

/** Resource use of the guest process, all of it from /proc, and the guest's counter from its console. */
async function statsOf(vm: SimVm): Promise<ResultInputOf<'vm/stats'>> {
  const pid = vm.guestPid();
  const { nextTick } = await readConsole(vm.consolePath, vm.consoleOffset);
  if (pid === undefined || !proc.readStat(pid)) throw errors.invalidState(vm.vmId, vm.status, ['running', 'paused']);
  const status = proc.statusNumbers(pid);
  return {
    cpuTimeMs: proc.cpuTimeMs(pid),
    memoryRssBytes: proc.rssBytes(pid),
    uptimeMs: proc.uptimeMs(pid),
    counters: {
      threads: proc.threadIds(pid).length,
      voluntaryContextSwitches: status.get('voluntary_ctxt_switches') ?? 0,
      involuntaryContextSwitches: status.get('nonvoluntary_ctxt_switches') ?? 0,
      ...(nextTick === undefined ? {} : { guestNextTick: nextTick }),
    },
  };
}

/** Responsive means: the guest process exists and is in the scheduler state its status implies. */
function checkOf(vm: SimVm): ResultInputOf<'vm/check'> {
  if (vm.status !== 'running' && vm.status !== 'paused') {
    const ok = vm.status === 'created' || vm.status === 'stopped';
    return { ok, detail: `the VM is ${vm.status}: no guest process${ok ? ' to check' : ''}` };
  }
  const pid = vm.guestPid();
  const stat = pid === undefined ? undefined : proc.readStat(pid);
  if (!stat) return { ok: false, detail: `the VM is ${vm.status} but its guest process is gone` };
  const expected = vm.status === 'paused' ? ['T', 't'] : ['R', 'S', 'D'];
  return {
    ok: expected.includes(stat.state),
    detail: `guest pid ${pid} in state ${stat.state}${vm.watched ? '' : ' (not watched since vm/disconnect)'}`,
  };
}

export function handlersFor(reg: Registry): Handlers {
  return {
    'config/validate': async ({ config }) => {
      const { config: adjusted, warnings } = await normalizeConfig(config);
      return { config: adjusted, warnings };
    },
    'vm/create': ({ vmId, config }) => reg.create(vmId, config),
    'vm/restore': ({ vmId, config, path }, ctx) => reg.restore(vmId, config, path, ctx),
    'vm/recover': ({ vmId, config, state }) => reg.recover(vmId, config, state),
    'vm/receiveMigration': ({ vmId, config, address }) => reg.receiveMigration(vmId, config, address),
    'vm/migrate': ({ vmId, uri, tls }, ctx) => {
      // Its stream is one JSON line in the clear: a destination that asks for TLS is refused before anything is sent.
      if (tls === true) throw errors.notSupported('vm/migrate', 'the destination takes the stream in TLS only; this plugin sends it in plaintext');
      return reg.migrate(vmId, uri, ctx);
    },
    'vm/start': ({ vmId }, ctx) => reg.require(vmId).start(ctx),
    'vm/stop': ({ vmId, force, graceMs }, ctx) => reg.require(vmId).stop(force, graceMs, ctx.signal),
    'vm/pause': ({ vmId }, ctx) => reg.require(vmId).pause(ctx.signal),
    'vm/resume': ({ vmId }, ctx) => reg.require(vmId).resume(ctx.signal),
    'vm/wait': ({ vmId }, ctx) => reg.require(vmId).wait(ctx.signal),
    'vm/save': ({ vmId, path }, ctx) => reg.require(vmId).save(path, ctx),
    'vm/delete': async ({ vmId }) => {
      await reg.deleteVm(vmId);
      return {};
    },
    'vm/check': ({ vmId }) => checkOf(reg.require(vmId)),
    'vm/disconnect': async ({ vmId }) => {
      await reg.require(vmId).disconnect();
      return {};
    },
    'vm/info': ({ vmId }) => infoOf(reg.require(vmId)),
    // As created (adjusted), with the devices attached now.
    'vm/config': ({ vmId }) => {
      const vm = reg.require(vmId);
      return { config: { ...vm.config, devices: [...vm.hardware.devices] } };
    },
    'device/add': ({ vmId, device }) => reg.require(vmId).addDevice(device),
    'device/remove': ({ vmId, deviceId }) => reg.require(vmId).removeDevice(deviceId),
    'vm/resizeVcpus': ({ vmId, count }) => reg.require(vmId).resizeVcpus(count),
    'vm/resizeMemory': ({ vmId, sizeMiB }) => reg.require(vmId).resizeMemory(sizeMiB),
    'vm/console': ({ vmId }) => ({ kind: 'log', path: reg.require(vmId).consolePath }),
    'vm/agentSocket': ({ vmId }) => agentSocketOf(reg.require(vmId)),
    'vm/pids': ({ vmId }) => {
      const pid = reg.require(vmId).guestPid();
      return { pids: pid === undefined ? [] : [pid] };
    },
    'vm/threads': ({ vmId }) => ({ vcpus: threadsOf(reg.require(vmId)) }),
    'vm/stats': ({ vmId }) => statsOf(reg.require(vmId)),
    'image/ensure': (params) => ensureImage(params),
    'image/create': (params) => createImage(params),
    'image/delete': async ({ path }) => {
      const user = reg.userOf(path);
      if (user && (user.status === 'running' || user.status === 'paused')) {
        throw errors.invalidState(user.vmId, user.status, ['created', 'stopped', 'crashed', 'lost']);
      }
      await deleteImage(path);
      return {};
    },
  };
}

const EchoParams = z.strictObject({
  message: z.string({ error: (iss) => (iss.input === undefined ? 'is required' : undefined) }).check(z.maxLength(4096)),
});

/**
 * Vendor methods travel untyped (`x-<vendor>/<name>`): the SDK hands over raw params, so each one
 * checks them against the schema it declares.
 */
export const extensions: Record<string, ExtensionHandler> = {
  'x-example/echo': {
    summary: 'Answers the message it is sent, with the plugin process id: a liveness probe through the vendor channel.',
    params: z.toJSONSchema(EchoParams) as Record<string, Json>,
    result: {
      type: 'object',
      required: ['message', 'pid', 'uptimeMs'],
      properties: { message: { type: 'string' }, pid: { type: 'integer' }, uptimeMs: { type: 'number' } },
    },
    handler: (raw) => {
      const parsed = EchoParams.safeParse(raw ?? {});
      if (!parsed.success) throw errors.invalidParams('x-example/echo', toIssues(parsed.error));
      return { message: parsed.data.message, pid: process.pid, uptimeMs: Math.round(process.uptime() * 1000) };
    },
  },
};
