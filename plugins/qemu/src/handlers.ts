// The protocol's methods on the plugin's VMs; params arrive validated against the method table, and the SDK has
// refused what the state machine forbids (vmStatus) before a handler runs.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errors, proc, type CallContext, type Handlers, type VmRegistry } from 'hvplug/plugin-sdk';
import type { ResultInputOf, VmConfig, VmResult } from 'hvplug/protocol';
import { addDevice, removeDevice, resizeMemory, resizeVcpus } from './devices.js';
import { createImage, deleteImage, ensureImage } from './images.js';
import { sendingSecurity } from './migration-tls.js';
import { newVm, validateConfig } from './new-vm.js';
import { connectablePath, killProcessGroup, qemuOfPidfile, QMP_SOCKET } from './process.js';
import { readSidecar } from './snapshot.js';
import { vmState } from './state.js';
import { QemuVm } from './vm.js';

type Registry = VmRegistry<QemuVm>;

/** What the plugin was started with (its command line). */
export interface QemuPluginOptions {
  /** --migration-tls-dir: migration streams over TCP go in TLS with these credentials, and never in the clear. */
  migrationTlsDir?: string;
}

const runDirOf = (vms: Registry, vmId: string): string => join(vms.session.init.runtimeDir, vmId);

/** A VM for `config`, checked and set up but not yet registered. */
async function prepare(vms: Registry, vmId: string, config: VmConfig): Promise<QemuVm> {
  if (vms.has(vmId)) throw errors.alreadyExists(vmId);
  return newVm(vmId, config, runDirOf(vms, vmId), vms.emit);
}

function register(vms: Registry, vm: QemuVm): QemuVm {
  vms.add(vm).announce('created');
  return vm;
}

async function restore(vms: Registry, vmId: string, config: VmConfig, path: string, ctx: CallContext): Promise<VmResult> {
  if (!existsSync(path)) throw errors.invalidConfig([{ path: ['path'], message: `snapshot ${path} does not exist` }]);
  const vm = await prepare(vms, vmId, config);
  const sidecar = await readSidecar(path);
  register(vms, vm);
  try {
    return await vm.restoreFrom(path, sidecar, ctx);
  } catch (e) {
    await vm.destroy().catch(() => undefined);
    vms.delete(vmId);
    throw e;
  }
}

/** vm/receiveMigration: a VM whose QEMU waits for a live migration; answers where the source sends it. */
async function receiveMigration(vms: Registry, vmId: string, config: VmConfig, address: string | undefined, tlsDir: string | undefined, ctx: CallContext): Promise<ResultInputOf<'vm/receiveMigration'>> {
  const vm = register(vms, await prepare(vms, vmId, config));
  try {
    const { uri, tls } = await vm.receiveMigration(address, tlsDir, ctx.signal);
    return { ...vm.result(), uri, ...(tls ? { tls } : {}) };
  } catch (e) {
    await remove(vms, vmId).catch(() => undefined);
    throw e;
  }
}

/** vm/migrate: once the guest runs at the destination, nothing of the VM is left here. */
async function migrate(vms: Registry, vmId: string, uri: string, tls: boolean, tlsDir: string | undefined, ctx: CallContext): Promise<ResultInputOf<'vm/migrate'>> {
  const vm = vms.require(vmId);
  const done = await vm.migrate(uri, sendingSecurity(uri, tls, tlsDir), ctx);
  vms.delete(vmId);
  await rm(vm.state.runDir, { recursive: true, force: true });
  return done;
}

async function recover(vms: Registry, vmId: string, config: VmConfig, raw: unknown): Promise<VmResult> {
  const state = vmState.decode(raw, 'vm/recover');
  vms.get(vmId)?.release();
  vms.delete(vmId);
  const vm = vms.add(new QemuVm(vmId, config, state, vms.emit));
  await vm.reattach();
  return vm.result();
}

/**
 * vm/delete. Of a VM this process does not know, what a vm/create or vm/restore cut short (its host died before
 * the answer, so the host has no state to recover it with) may have left under the VM's id goes: a QEMU found by
 * its pidfile (checked to be that VM's QEMU) and the run directory. Deleting nothing succeeds.
 */
async function remove(vms: Registry, vmId: string): Promise<void> {
  const vm = vms.get(vmId);
  if (!vm) {
    const runDir = runDirOf(vms, vmId);
    const pid = await qemuOfPidfile(runDir, QMP_SOCKET);
    if (pid !== undefined) await killProcessGroup(pid, { graceMs: 1_000 });
    await rm(runDir, { recursive: true, force: true });
    return;
  }
  await vm.destroy();
  await vm.endUnrecorded();
  vm.forget();
  vms.delete(vmId);
  await rm(vm.state.runDir, { recursive: true, force: true });
}

function info(vm: QemuVm): ResultInputOf<'vm/info'> {
  const s = vm.state;
  return {
    vmId: vm.vmId,
    status: vm.status,
    ...(s.pid === null ? {} : { pid: s.pid }),
    vcpus: s.vcpus,
    memoryMiB: s.memoryMiB,
    machine: s.launch.machine,
    accel: s.launch.accel,
    devices: s.attached.map((a) => ({ id: a.device.id, type: a.device.type })),
    details: {
      accelReason: s.launch.accelReason,
      runDir: s.runDir,
      qmpSocket: s.qmpSocket,
      consoleLog: s.consoleLog,
      ...(s.consoleSocket === undefined ? {} : { consoleSocket: join(s.runDir, s.consoleSocket) }),
      kernel: s.launch.kernel,
      vcpusMax: s.launch.vcpusMax,
      lastExit: s.lastExit === null ? null : { ...s.lastExit },
      waiting: vm.waiting,
    },
  };
}

/**
 * The socket when the VM has one (its output is in the log too), else the log. A run directory deep enough to push
 * the socket's path past sun_path's 107 bytes is reached through the running QEMU's cwd, as QMP is.
 */
function consoleOf(vm: QemuVm): ResultInputOf<'vm/console'> {
  const s = vm.state;
  if (s.consoleSocket === undefined) return { kind: 'log', path: s.consoleLog };
  const pid = vm.livePid;
  return { kind: 'socket', path: pid === undefined ? join(s.runDir, s.consoleSocket) : connectablePath(s.runDir, s.consoleSocket, pid) };
}

/** From /proc: QEMU's own accounting is per vCPU and misses the I/O threads. */
function stats(vm: QemuVm): ResultInputOf<'vm/stats'> {
  const pid = vm.livePid;
  const st = pid === undefined ? undefined : proc.readStat(pid);
  if (pid === undefined || st === undefined) return { cpuTimeMs: 0, memoryRssBytes: 0, uptimeMs: 0, counters: {} };
  return {
    cpuTimeMs: proc.cpuTimeMs(pid),
    memoryRssBytes: proc.rssBytes(pid),
    uptimeMs: vm.state.startedAt === null ? 0 : Date.now() - vm.state.startedAt,
    counters: { threads: st.threads, cpuTicks: st.cpuTicks },
  };
}

export function handlersFor(vms: Registry, opts: QemuPluginOptions = {}): Handlers {
  return {
    'config/validate': ({ config }) => validateConfig(config),
    'vm/create': async ({ vmId, config }) => register(vms, await prepare(vms, vmId, config)).result(),
    'vm/restore': ({ vmId, config, path }, ctx) => restore(vms, vmId, config, path, ctx),
    'vm/recover': ({ vmId, config, state }) => recover(vms, vmId, config, state),
    'vm/receiveMigration': ({ vmId, config, address }, ctx) => receiveMigration(vms, vmId, config, address, opts.migrationTlsDir, ctx),
    'vm/migrate': ({ vmId, uri, tls }, ctx) => migrate(vms, vmId, uri, tls === true, opts.migrationTlsDir, ctx),
    'vm/start': ({ vmId }, ctx) => vms.require(vmId).start(ctx),
    'vm/stop': ({ vmId, force, graceMs }, ctx) => vms.require(vmId).stop(force, graceMs, ctx.signal),
    'vm/pause': ({ vmId }, ctx) => vms.require(vmId).pause(ctx),
    'vm/resume': ({ vmId }, ctx) => vms.require(vmId).resume(ctx),
    'vm/wait': ({ vmId }, ctx) => vms.require(vmId).wait(ctx.signal),
    'vm/save': ({ vmId, path }, ctx) => vms.require(vmId).save(path, ctx),
    'vm/delete': async ({ vmId }) => {
      await remove(vms, vmId);
      return {};
    },
    'vm/check': ({ vmId }) => vms.require(vmId).check(),
    'vm/disconnect': ({ vmId }) => {
      vms.require(vmId).release();
      return {};
    },
    'vm/info': ({ vmId }) => info(vms.require(vmId)),
    'vm/config': ({ vmId }) => ({ config: vms.require(vmId).currentConfig() }),
    'device/add': ({ vmId, device }, ctx) => addDevice(vms.require(vmId), device, ctx.signal),
    'device/remove': ({ vmId, deviceId }, ctx) => removeDevice(vms.require(vmId), deviceId, ctx.signal),
    'vm/resizeVcpus': ({ vmId, count }, ctx) => resizeVcpus(vms.require(vmId), count, ctx.signal),
    'vm/resizeMemory': ({ vmId, sizeMiB }, ctx) => resizeMemory(vms.require(vmId), sizeMiB, ctx.signal),
    'vm/console': ({ vmId }) => consoleOf(vms.require(vmId)),
    'vm/pids': ({ vmId }) => {
      const pid = vms.require(vmId).livePid;
      return { pids: pid === undefined ? [] : [pid] };
    },
    'vm/threads': async ({ vmId }) => ({ vcpus: await vms.require(vmId).threads() }),
    'vm/stats': ({ vmId }) => stats(vms.require(vmId)),
    'image/ensure': (params) => ensureImage(params),
    'image/create': (params) => createImage(params),
    'image/delete': async ({ path }) => {
      await deleteImage(path);
      return {};
    },
  };
}
