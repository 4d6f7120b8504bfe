import type { ShimVm } from 'hvplug';
import { DEVICE_TYPES, VmEvent, type VmEventType } from 'hvplug/protocol';
import { fail, SkipCheck, sleep, within, type CheckDef } from '../check.js';
import { PATH_TO, type Fixture, type PreparedStatus } from '../fixture.js';
import type { GatedMethod } from '../method-cases.js';
import { isAlive } from '../processes.js';
import { rawEventOf } from '../raw-events.js';
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

/** The VMM dying on its own (a guest poweroff, a crash) must reach the host as an event, and end vm/wait. */
const vmmExit: CheckDef = {
  id: 'events.vmm-exit',
  title: 'a VMM that dies is reported by an exited or crashed event and ends vm/wait',
  verifies: 'vm/event exited/crashed: a VM dying outside any call reaches the host; vm/wait resolves.',
  needs: ['vm/create', 'vm/start'],
  run: async (fx) => {
    if (!fx.advertised('vm/info') && !fx.advertised('vm/pids')) throw new SkipCheck('neither vm/info nor vm/pids is advertised: the VMM\'s pid is unknown');
    const vm = await fx.vmIn('running');
    const pids = await fx.vmPids(vm);
    if (!pids.length) throw new SkipCheck('the plugin reports no pid for a running VM');
    const mark = fx.run.wire.records.length;
    const waiting = fx.advertised('vm/wait') ? vm.wait(undefined, fx.opts('vm/wait', 5_000)) : undefined;
    waiting?.catch(() => undefined);
    await sleep(50, fx.signal);
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    await within(2_000, () => pids.every((p) => !isAlive(p)), fx.signal);
    const matches = (r: WireRecord): boolean => {
      const ev = eventOf(r);
      return ev?.vmId === vm.id && (ev.type === 'exited' || ev.type === 'crashed');
    };
    if (!(await fx.run.wire.waitFor(matches, 3_000, mark))) fail(`the VM's processes ${pids.join(', ')} were killed, but no exited or crashed event arrived within 3000 ms`);
    if (waiting) {
      const r = await waiting.catch((err: Error) => fail(`vm/wait did not resolve after the VMM died: ${err.message}`));
      if (r.status === 'running') fail('vm/wait answered status running for a VM whose VMM died');
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
