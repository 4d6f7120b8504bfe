import type { Capabilities } from './capabilities.js';
import type { DeviceType, NetBackend } from './devices.js';
import { inProtocol, methodDef, methodSince, type MethodName } from './methods.js';
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
  const def = methodDef(method);
  if (def.gated && !caps.methods.includes(method)) return `the plugin does not advertise ${method}`;
  // The machine's hotplug is looked up only for a call that plugs or unplugs: most calls do neither.
  if (def.devices === 'adds' && ctx.deviceType) {
    const live = isLive(ctx.vmStatus);
    const support = caps.devices[ctx.deviceType];
    if (!support) return `the plugin does not support ${ctx.deviceType} devices`;
    if (live && noMachineHotplug(caps, ctx.machine)) return `machine ${ctx.machine} has no hotplug`;
    if (live && !support.hotplug) return `the plugin cannot hot-plug ${ctx.deviceType} devices`;
    if (!live && !support.coldplug) return `the plugin cannot cold-plug ${ctx.deviceType} devices`;
  }
  if (def.devices === 'removes' && ctx.deviceType && isLive(ctx.vmStatus)) {
    if (noMachineHotplug(caps, ctx.machine)) return `machine ${ctx.machine} has no hotplug`;
    if (!caps.devices[ctx.deviceType]?.hotunplug) return `the plugin cannot hot-unplug ${ctx.deviceType} devices`;
  }
  if (ctx.coldDevices === undefined && ctx.netBackends === undefined) return undefined;
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

function noMachineHotplug(caps: Capabilities, machine: string | undefined): boolean {
  return machine !== undefined && caps.machines[machine]?.hotplug === false;
}

/** A VM with a running VMM: a device change to it is a hot plug or unplug. */
function isLive(status: VmStatus | undefined): boolean {
  return status === 'running' || status === 'paused';
}
