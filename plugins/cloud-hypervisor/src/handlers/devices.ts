// device/add and device/remove. Before boot they change the VM's config (vm.add-* answers 204, vm.remove-
// device edits the config); after boot they hot-plug (vm.add-* answers 200 with the PCI address) and
// hot-unplug. The rng device has no endpoint at all: before boot the plugin re-creates the VM's config
// with it (vm.delete + vm.create, harmless while nothing runs), after boot it cannot change.
import { rm } from 'node:fs/promises';
import { errors, type CallContext, type Handlers } from 'hvplug/plugin-sdk';
import type { Device, VmConfig } from 'hvplug/protocol';
import type { PciDeviceInfo } from '../api-types.js';
import { chCall } from '../errors.js';
import { AGENT_VSOCK_ID, toChConfig } from '../config-map.js';
import { deviceProblem, toChDevice, type ChDevice } from '../device-map.js';
import type { Registry } from '../registry.js';
import type { ChVm } from '../vm.js';

function plug(vm: ChVm, dev: ChDevice, signal: AbortSignal): Promise<PciDeviceInfo | undefined> {
  const opts = { signal };
  switch (dev.list) {
    case 'disks':
      return vm.client.addDisk(dev.body, opts);
    case 'net':
      return vm.client.addNet(dev.body, opts);
    case 'fs':
      return vm.client.addFs(dev.body, opts);
    case 'devices':
      return vm.client.addDevice(dev.body, opts);
    case 'vsock':
      return vm.client.addVsock(dev.body, opts);
    case 'rng':
      throw new Error('rng devices have no vm.add-* endpoint');
  }
}

/** The VM's CH config rebuilt from `config` (only before boot: no guest has seen the old one). */
async function recreate(vm: ChVm, config: VmConfig, ctx: CallContext): Promise<void> {
  const next = toChConfig(config, vm.options, vm.paths);
  const previous = toChConfig(vm.config, vm.options, vm.paths);
  await chCall(() => vm.client.deleteVm({ signal: ctx.signal }));
  try {
    await chCall(() => vm.client.createVm(next.body, { signal: ctx.signal }));
  } catch (err) {
    await vm.client.createVm(previous.body).catch((e: Error) => vm.log.error({ vmId: vm.vmId, err: e.message }, 'cannot put the previous config back'));
    throw err;
  }
  vm.agent = next.agent;
}

async function addDevice(vm: ChVm, device: Device, ctx: CallContext): Promise<void> {
  const problem = deviceProblem(device);
  if (problem) throw errors.invalidConfig([{ path: ['device'], message: problem }]);
  vm.require(['created', 'running']);
  if (vm.config.devices.some((d) => d.id === device.id)) throw errors.alreadyExists(device.id);
  if (device.type === 'vsock' && vm.config.devices.some((d) => d.type === 'vsock')) throw errors.resourceExhausted('Cloud Hypervisor has at most one vsock device');
  if (device.type === 'rng') {
    if (vm.config.devices.some((d) => d.type === 'rng')) throw errors.resourceExhausted('Cloud Hypervisor has at most one rng device');
    vm.require(['created']);
    await recreate(vm, { ...vm.config, devices: [...vm.config.devices, device] }, ctx);
    return;
  }
  if (device.type === 'vsock' && vm.agent) {
    // The agent vsock the plugin added gives way to the caller's: CH has room for one.
    await chCall(() => vm.client.removeDevice({ id: AGENT_VSOCK_ID }, { signal: ctx.signal }));
    vm.agent = undefined;
  }
  const dev = toChDevice(device, vm.paths);
  // The plugin's own socket path may hold a stale socket from a device removed earlier.
  if (dev.list === 'vsock' && device.type === 'vsock' && !device.socketPath) await rm(vm.paths.userVsock, { force: true });
  const info = await chCall(() => plug(vm, dev, ctx.signal));
  if (info) vm.bdfs.set(device.id, info.bdf);
}

async function removeDevice(vm: ChVm, deviceId: string, ctx: CallContext): Promise<void> {
  const device = vm.config.devices.find((d) => d.id === deviceId);
  if (!device) throw errors.deviceNotFound('device/remove', vm.vmId, deviceId);
  vm.require(['created', 'running']);
  const cold = vm.status === 'created';
  if (device.type === 'rng') {
    vm.require(['created']);
    await recreate(vm, { ...vm.config, devices: vm.config.devices.filter((d) => d.id !== deviceId) }, ctx);
  } else {
    // A hot removal is announced when the VMM writes device-removed (once the guest let go of it).
    if (!cold) vm.pendingRemoval.add(deviceId);
    await chCall(() => vm.client.removeDevice({ id: deviceId }, { signal: ctx.signal })).catch((err: unknown) => {
      vm.pendingRemoval.delete(deviceId);
      throw err;
    });
  }
  vm.config = { ...vm.config, devices: vm.config.devices.filter((d) => d.id !== deviceId) };
  vm.bdfs.delete(deviceId);
  if (cold) vm.deviceRemoved(deviceId);
}

export function deviceHandlers(reg: Registry): Handlers {
  return {
    'device/add': async ({ vmId, device }, ctx) => {
      const vm = reg.require(vmId);
      return vm.exclusive(async () => {
        vm.reattach();
        await addDevice(vm, device, ctx);
        vm.config = { ...vm.config, devices: [...vm.config.devices, device] };
        await vm.sync();
        // Cloud Hypervisor writes no event for an added device: the plugin announces it.
        vm.deviceAdded(device);
        await vm.persist();
        return { deviceId: device.id, state: vm.stateJson() };
      }, ctx.signal);
    },

    'device/remove': async ({ vmId, deviceId }, ctx) => {
      const vm = reg.require(vmId);
      return vm.exclusive(async () => {
        vm.reattach();
        await removeDevice(vm, deviceId, ctx);
        await vm.sync();
        await vm.persist();
        return { state: vm.stateJson() };
      }, ctx.signal);
    },
  };
}
