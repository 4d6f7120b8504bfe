import type { ShimVm } from 'hvplug';
import { DEVICE_TYPES, VmEvent, type VmEventType } from 'hvplug/protocol';
import { expect, fail, SkipCheck, sleep, type CheckDef } from '../check.js';
import { PATH_TO, type Fixture, type PreparedStatus } from '../fixture.js';
import type { GatedMethod } from '../method-cases.js';
import { describeRawEvent, rawEventOf } from '../raw-events.js';
import { reportedStatus } from '../vm-report.js';
import { KILL_EVENTS_MS, KILLED, killedEvents, killVmm } from '../vmm-kill.js';
import type { WireRecord } from '../wire-monitor.js';

const EVENT_WAIT_MS = 2_000;

interface Eventful {
  /** The VM's status before the call; undefined: the call brings the VM up. */
  from?: PreparedStatus;
  expect: readonly VmEventType[];
  call(fx: Fixture, vm: ShimVm | undefined): Promise<{ vm: ShimVm; deviceId?: string }>;
}

function target(vm: ShimVm | undefined): ShimVm {
  if (!vm) throw new Error('suite error: the call needs a VM');
  return vm;
}

function eventOf(r: WireRecord): VmEvent | undefined {
  if (r.direction !== 'receive' || r.message.method !== 'vm/event') return undefined;
  const parsed = VmEvent.safeParse(r.message.params);
  return parsed.success ? parsed.data : undefined;
}

/** A device the plugin can attach to a VM in its current state, or a skip saying there is none. */
async function attachable(fx: Fixture, how: 'coldplug' | 'hotplug', id: string): Promise<Awaited<ReturnType<Fixture['device']>>> {
  const type = DEVICE_TYPES.find((t) => fx.caps.devices[t]?.[how]);
  if (!type) throw new SkipCheck(`no device type can be ${how === 'coldplug' ? 'cold' : 'hot'}-plugged`);
  return fx.device(type, id);
}

/** Each call that changes a VM and the event it must be announced by. */
const EVENTFUL: Record<'vm/create' | 'vm/start' | 'vm/pause' | 'vm/resume' | 'vm/stop' | 'device/add' | 'device/remove', Eventful> = {
  'vm/create': { expect: ['created'], call: async (fx) => ({ vm: await fx.createVm() }) },
  'vm/start': {
    from: 'created',
    expect: ['running'],
    call: async (fx, vm) => {
      await target(vm).start(undefined, fx.opts('vm/start'));
      return { vm: target(vm) };
    },
  },
  'vm/pause': {
    from: 'running',
    expect: ['paused'],
    call: async (fx, vm) => {
      await target(vm).pause(undefined, fx.opts('vm/pause'));
      return { vm: target(vm) };
    },
  },
  'vm/resume': {
    from: 'paused',
    expect: ['resumed'],
    call: async (fx, vm) => {
      await target(vm).resume(undefined, fx.opts('vm/resume'));
      return { vm: target(vm) };
    },
  },
  'vm/stop': {
    from: 'running',
    expect: ['stopped', 'exited'],
    call: async (fx, vm) => {
      await target(vm).stop({ graceMs: 2_000 }, fx.opts('vm/stop'));
      return { vm: target(vm) };
    },
  },
  'device/add': {
    from: 'created',
    expect: ['device-added'],
    call: async (fx, vm) => {
      const device = await attachable(fx, 'coldplug', 'ev-dev0');
      await target(vm).addDevice({ device }, fx.opts('device/add'));
      return { vm: target(vm), deviceId: device.id };
    },
  },
  'device/remove': {
    from: 'created',
    expect: ['device-removed'],
    call: async (fx, vm) => {
      const device = await attachable(fx, 'coldplug', 'ev-dev1');
      await target(vm).addDevice({ device }, fx.opts('device/add'));
      await target(vm).removeDevice({ deviceId: device.id }, fx.opts('device/remove'));
      return { vm: target(vm), deviceId: device.id };
    },
  },
};

function announcedCheck(method: keyof typeof EVENTFUL): CheckDef {
  const e = EVENTFUL[method];
  const needs: GatedMethod[] = [method, ...((e.from ? PATH_TO[e.from] : []) as GatedMethod[])];
  if (method === 'device/remove') needs.push('device/add');
  return {
    id: `events.${method}`,
    title: `${method} is announced by a ${e.expect.join(' or ')} event`,
    verifies: 'vm/event: every lifecycle and device change reaches the host as an event of its VM.',
    needs,
    run: async (fx) => {
      const vm = e.from ? await fx.vmIn(e.from) : undefined;
      const mark = fx.run.wire.records.length;
      const done = await e.call(fx, vm);
      const matches = (r: WireRecord): boolean => {
        const ev = eventOf(r);
        if (!ev || ev.vmId !== done.vm.id || !e.expect.includes(ev.type)) return false;
        return done.deviceId === undefined || ('deviceId' in ev && ev.deviceId === done.deviceId);
      };
      if (await fx.run.wire.waitFor(matches, EVENT_WAIT_MS, mark)) return;
      // An event the host dropped did arrive: say so, and what was wrong with it, not that nothing came.
      const dropped = fx.run.wire.records
        .slice(mark)
        .map(rawEventOf)
        .find((ev) => ev?.vmId === done.vm.id && ev.problems.length > 0 && e.expect.some((t) => t === ev.type));
      if (dropped) {
        fail(`${method} succeeded; a ${dropped.type} event arrived but the host dropped it as malformed: ${dropped.problems.join('; ')} (as sent: ${JSON.stringify(dropped.params)})`);
      }
      const seen = fx.run.wire.records
        .slice(mark)
        .map(eventOf)
        .filter((ev): ev is VmEvent => ev?.vmId === done.vm.id)
        .map((ev) => ev.type);
      fail(
        `${method} succeeded, but no ${e.expect.join(' or ')} event${done.deviceId ? ` for device ${done.deviceId}` : ''} arrived within ${EVENT_WAIT_MS} ms (events of the VM since the call: ${seen.join(', ') || 'none'})`,
      );
    },
  };
}

/**
 * A VMM killed outside any call: the plugin must send what the table says of a VMM that ends unasked
 * (VMM_ENDS.killed: exited, then crashed), with the published fields, leave the VM in the status the last
 * one names, and end vm/wait with it.
 */
const vmmExit: CheckDef = {
  id: 'events.vmm-exit',
  title: `a VMM that is killed is reported by ${KILLED.events.join(' then ')} events, the VM ends ${KILLED.status}, and vm/wait ends`,
  verifies: `vm/event after a VMM ends unasked (x-hvplug-vmm-ends, killed): ${KILLED.events.join(' then ')}, exited with the signal; the VM is then ${KILLED.status}; vm/wait resolves.`,
  needs: ['vm/create', 'vm/start'],
  run: async (fx) => {
    const vm = await fx.vmIn('running');
    const waiting = fx.advertised('vm/wait') ? vm.wait(undefined, fx.opts('vm/wait', 10_000)) : undefined;
    waiting?.catch(() => undefined);
    await sleep(50, fx.signal);
    const { pids, mark } = await killVmm(fx, vm);
    const seen = await killedEvents(fx, vm.id, mark);
    const types = seen.map((e) => e.type ?? 'untyped');
    const killed = `the VM's processes ${pids.join(', ')} were SIGKILLed`;
    if (types.join() !== KILLED.events.join()) {
      fail(`${killed}; the state machine (x-hvplug-vmm-ends, killed) asks for ${KILLED.events.join(' then ')}, the plugin sent ${types.join(', ') || 'no lifecycle event'} within ${KILL_EVENTS_MS} ms`);
    }
    const bad = seen.find((e) => e.problems.length > 0);
    if (bad) fail(`${killed}; the ${describeRawEvent(bad)} is malformed, so the host dropped it: ${bad.problems.join('; ')} (as sent: ${JSON.stringify(bad.params)})`);
    const exited = seen.find((e) => e.type === 'exited');
    if (exited && typeof exited.params.signal !== 'string') fail(`${killed}; the exited event names no signal (as sent: ${JSON.stringify(exited.params)})`);
    const now = await reportedStatus(fx, vm);
    if (now !== undefined) expect(now === KILLED.status, `${killed}; after ${types.join(', ')}, vm/info says ${now}, expected ${KILLED.status}`);
    if (waiting) {
      const r = await waiting.catch((err: Error) => fail(`vm/wait did not resolve after the VMM died: ${err.message}`));
      expect(r.status === KILLED.status, `${killed}; vm/wait answered status ${r.status}, expected ${KILLED.status}`);
    }
  },
};

/** Judges every VM's event stream the whole run produced. */
const order: CheckDef = {
  id: 'events.order',
  title: 'every VM\'s events arrived in a legal order',
  verifies: 'vm/event ordering per VM: seq increases, created comes first, transitions fit the status, nothing after delete.',
  late: true,
  run: async (fx) => {
    const v = fx.run.events.violations;
    if (!v.length) return;
    fail(`${v.length} event(s) out of order:\n${v.map((x) => `[${x.check}] VM ${x.vmId}: ${x.what}`).join('\n')}`);
  },
};

export function eventChecks(): CheckDef[] {
  return [...(Object.keys(EVENTFUL) as (keyof typeof EVENTFUL)[]).map(announcedCheck), vmmExit];
}

export const eventOrderCheck = order;
