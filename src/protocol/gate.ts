import type { Capabilities } from './capabilities.js';
import type { DeviceType, NetBackend } from './devices.js';
import { inProtocol, methodDef, methods, methodSince, type MethodName } from './methods.js';
import type { VmStatus } from './vm.js';

/** What the caller knows about the VM a call targets, to decide cold versus hot plug. */
export interface GateContext {
  vmStatus?: VmStatus;
  machine?: string;
  /** device/add: the new device's type; device/remove: the removed device's type, when known. */
  deviceType?: DeviceType;
  /** vm/create, vm/restore: the types of the cold-plugged devices in the config. */
  coldDevices?: readonly DeviceType[];
  /** device/add, vm/create: the backends of the net devices the call attaches. */
  netBackends?: readonly NetBackend[];
  /** The protocol version of the session: a method added after it is refused, whatever the plugin advertises. */
  protocolVersion?: string;
}

/**
 * Why the plugin's capabilities do not allow this call, or undefined when they do. Pure, so the shim
 * can refuse locally and the conformance suite can predict the refusal from the same rule.
 */
export function capabilityRefusal(method: MethodName, caps: Capabilities, ctx: GateContext = {}): string | undefined {
  const v = ctx.protocolVersion;
  if (v !== undefined && !inProtocol(method, v)) return `${method} came in protocol ${methodSince(method)}; the plugin speaks ${v}`;
  if (methods[method].gated && !caps.methods.includes(method)) return `the plugin does not advertise ${method}`;
  const live = ctx.vmStatus === 'running' || ctx.vmStatus === 'paused';
  const noMachineHotplug = ctx.machine !== undefined && caps.machines[ctx.machine]?.hotplug === false;
  if (methodDef(method).devices === 'adds' && ctx.deviceType) {
    const support = caps.devices[ctx.deviceType];
    if (!support) return `the plugin does not support ${ctx.deviceType} devices`;
    if (live && noMachineHotplug) return `machine ${ctx.machine} has no hotplug`;
    if (live && !support.hotplug) return `the plugin cannot hot-plug ${ctx.deviceType} devices`;
    if (!live && !support.coldplug) return `the plugin cannot cold-plug ${ctx.deviceType} devices`;
  }
  if (methodDef(method).devices === 'removes' && ctx.deviceType && live) {
    if (noMachineHotplug) return `machine ${ctx.machine} has no hotplug`;
    if (!caps.devices[ctx.deviceType]?.hotunplug) return `the plugin cannot hot-unplug ${ctx.deviceType} devices`;
  }
  for (const type of ctx.coldDevices ?? []) {
    if (!caps.devices[type]?.coldplug) return `the plugin cannot attach ${type} devices`;
  }
  for (const backend of ctx.netBackends ?? []) {
    if (!caps.netBackends.includes(backend)) {
      return `the plugin has no ${backend} net backend (it has ${caps.netBackends.join(', ') || 'none'})`;
    }
  }
  return undefined;
}
