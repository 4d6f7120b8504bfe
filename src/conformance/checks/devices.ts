import { DEVICE_TYPES, type Capabilities, type DeviceType } from 'hvplug/protocol';
import type { ShimVm } from 'hvplug';
import { expect, expectRejection, fail, type CheckDef } from '../check.js';
import type { Fixture } from '../fixture.js';
import { expectDeviceListed } from '../vm-report.js';
import { describeSentData, sentError } from '../wire-answers.js';

type Plug = 'coldplug' | 'hotplug' | 'hotunplug';

const WORDS: Record<Plug, string> = { coldplug: 'cold-plugged', hotplug: 'hot-plugged', hotunplug: 'hot-unplugged' };

async function coldplug(fx: Fixture, type: DeviceType): Promise<void> {
  // In the config at creation...
  const inConfig = await fx.device(type, `${type}-c0`);
  const vm = await fx.vmIn('created', { devices: [inConfig] });
  await expectDeviceListed(fx, vm, inConfig.id, true, `after vm/create with a ${type} device`);
  if (fx.advertised('vm/start')) {
    const r = await vm.start(undefined, fx.opts('vm/start'));
    expect(r.status === 'running', `a VM with a cold-plugged ${type} device did not start (status ${r.status})`);
    await expectDeviceListed(fx, vm, inConfig.id, true, `after booting with a ${type} device`);
  }
  if (!fx.advertised('device/add')) return;
  // ...and added before boot.
  const second = await fx.vmIn('created');
  const added = await fx.device(type, `${type}-c1`);
  const r = await second.addDevice({ device: added }, fx.opts('device/add'));
  expect(r.deviceId === added.id, `device/add answered deviceId ${r.deviceId} for ${added.id}`);
  await expectDeviceListed(fx, second, added.id, true, `after cold device/add of a ${type} device`);
  if (!fx.advertised('device/remove')) return;
  await second.removeDevice({ deviceId: added.id }, fx.opts('device/remove'));
  await expectDeviceListed(fx, second, added.id, false, `after cold device/remove of a ${type} device`);
}

async function hotplug(fx: Fixture, type: DeviceType): Promise<void> {
  const vm = await fx.vmIn('running');
  const device = await fx.device(type, `${type}-h0`);
  const r = await vm.addDevice({ device }, fx.opts('device/add'));
  expect(r.deviceId === device.id, `device/add answered deviceId ${r.deviceId} for ${device.id}`);
  await expectDeviceListed(fx, vm, device.id, true, `after hot-plugging a ${type} device`);
  if (fx.advertised('vm/info')) {
    const { status } = await vm.info(undefined, fx.opts('vm/info'));
    expect(status === 'running', `after hot-plugging a ${type} device the VM is ${status}`);
  }
}

/**
 * A hot-unplug is a request to the guest (ACPI on a PCI bus): the VMM removes the device once the guest
 * lets go of it, and a guest still booting answers only once it is up. The VM here was just started, so
 * device/remove's deadline has to cover the guest's boot: the method table's, which allows for that.
 */
async function unplug(fx: Fixture, vm: ShimVm, type: DeviceType, deviceId: string): Promise<void> {
  try {
    await vm.removeDevice({ deviceId }, fx.opts('device/remove'));
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'Timeout') throw err;
    const deadline = fx.deadline('device/remove');
    const within = deadline === null ? '' : ` within ${deadline / 1000} s`;
    fail(`device/remove of a ${type} device timed out: the guest did not acknowledge the unplug${within}; is it booted with ACPI hotplug?`);
  }
}

async function hotunplug(fx: Fixture, type: DeviceType, support: NonNullable<Capabilities['devices'][DeviceType]>): Promise<void> {
  const device = await fx.device(type, `${type}-u0`);
  const vm = await fx.vmIn('running', support.coldplug ? { devices: [device] } : {});
  if (!support.coldplug) await vm.addDevice({ device }, fx.opts('device/add'));
  await unplug(fx, vm, type, device.id);
  await expectDeviceListed(fx, vm, device.id, false, `after hot-unplugging a ${type} device`);
  if (fx.advertised('vm/info')) {
    const { status } = await vm.info(undefined, fx.opts('vm/info'));
    expect(status === 'running', `after hot-unplugging a ${type} device the VM is ${status}`);
  }
}

function deviceCheck(type: DeviceType, plug: Plug, caps: Capabilities): CheckDef {
  const support = caps.devices[type];
  let skip: string | undefined;
  if (!support) skip = `${type} devices not advertised`;
  else if (!support[plug]) skip = `${type} devices cannot be ${WORDS[plug]} (capabilities)`;
  else if (plug === 'hotunplug' && !support.coldplug && !support.hotplug) skip = `${type} devices cannot be attached at all`;
  const needs = {
    coldplug: ['vm/create'] as const,
    hotplug: ['vm/create', 'vm/start', 'device/add'] as const,
    hotunplug: support?.coldplug ? (['vm/create', 'vm/start', 'device/remove'] as const) : (['vm/create', 'vm/start', 'device/add', 'device/remove'] as const),
  }[plug];
  return {
    id: `device.${type}.${plug}`,
    title: `a ${type} device can be ${WORDS[plug]}`,
    verifies: `Device support per type as advertised (${type}: ${plug}); the VM's info and config follow the device.`,
    skip,
    needs,
    run: async (fx) => {
      if (plug === 'coldplug') return coldplug(fx, type);
      if (plug === 'hotplug') return hotplug(fx, type);
      return hotunplug(fx, type, support as NonNullable<typeof support>);
    },
  };
}

/** device/remove of an id the VM does not have: every plugin answers it the same way, so hosts can rely on it. */
const removeUnknown: CheckDef = {
  id: 'device.remove-unknown',
  title: 'device/remove of a device the VM does not have answers InvalidParams at deviceId',
  verifies: 'An unknown deviceId is InvalidParams with an issue at deviceId (the SDK\'s errors.deviceNotFound), whatever the VMM.',
  needs: ['vm/create', 'device/remove'],
  run: async (fx) => {
    const vm = await fx.vmIn('created');
    const mark = fx.run.wire.records.length;
    await expectRejection(fx.raw('device/remove', { vmId: vm.id, deviceId: 'no-such-device' }), 'InvalidParams', 'device/remove of no-such-device');
    // Read off the wire: the host replaces data it cannot read, so its typed error would hide the mistake.
    const sent = sentError(fx.run.wire, fx.conn.tag, 'device/remove', mark);
    const issues = (sent?.data as { issues?: unknown } | undefined)?.issues;
    const atDeviceId = Array.isArray(issues) && issues.some((i) => Array.isArray((i as { path?: unknown }).path) && (i as { path: unknown[] }).path[0] === 'deviceId');
    expect(atDeviceId && !sent?.dataProblems.length, `the InvalidParams answer names no issue at deviceId (a path is an array: ["deviceId"]); ${describeSentData(sent)}`);
  },
};

/** For every device type of the protocol: cold-plug, hot-plug, hot-unplug, each skipped when not advertised; then an unknown id. */
export function deviceChecks(caps: Capabilities): CheckDef[] {
  return [...DEVICE_TYPES.flatMap((type) => (['coldplug', 'hotplug', 'hotunplug'] as const).map((plug) => deviceCheck(type, plug, caps))), removeUnknown];
}
