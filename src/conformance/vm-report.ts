import type { ShimVm } from 'hvplug';
import type { VmStatus } from 'hvplug/protocol';
import { expect } from './check.js';
import type { Fixture } from './fixture.js';

/**
 * What the plugin itself reports about a VM, for checks that confirm an answer by asking again: the
 * status per vm/info (`deleted` once it answers VmNotFound), undefined when it offers no vm/info.
 */
export async function reportedStatus(fx: Fixture, vm: ShimVm): Promise<VmStatus | 'deleted' | undefined> {
  if (!fx.advertised('vm/info')) return undefined;
  try {
    return (await vm.info(undefined, fx.opts('vm/info'))).status;
  } catch (err) {
    if ((err as { code?: string }).code === 'VmNotFound') return 'deleted';
    throw err;
  }
}

/** The call answered `expected`, and vm/info (where offered) agrees. */
export async function expectStatus(fx: Fixture, vm: ShimVm, method: string, answered: string, expected: string): Promise<void> {
  expect(answered === expected, `${method} answered status ${answered}, expected ${expected}`);
  const now = await reportedStatus(fx, vm);
  if (now !== undefined) expect(now === expected, `after ${method}, vm/info reports ${now}, expected ${expected}`);
}

/** vm/info and vm/config (where offered) list the device, or do not. */
export async function expectDeviceListed(fx: Fixture, vm: ShimVm, deviceId: string, listed: boolean, when: string): Promise<void> {
  const word = listed ? 'does not list' : 'still lists';
  if (fx.advertised('vm/info')) {
    const info = await vm.info(undefined, fx.opts('vm/info'));
    expect(info.devices.some((d) => d.id === deviceId) === listed, `${when}, vm/info ${word} device ${deviceId}`);
  }
  if (fx.advertised('vm/config')) {
    const { config } = await vm.getConfig(undefined, fx.opts('vm/config'));
    expect(config.devices.some((d) => d.id === deviceId) === listed, `${when}, vm/config ${word} device ${deviceId}`);
  }
}
