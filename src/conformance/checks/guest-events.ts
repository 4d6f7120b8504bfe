import type { VmConfigInput } from 'hvplug/protocol';
import { expect, fail, SkipCheck, type CheckDef } from '../check.js';
import type { Fixture } from '../fixture.js';
import { describeRawEvent, isEventTime, rawEventOf, type RawEvent } from '../raw-events.js';
import { reportedStatus } from '../vm-report.js';

/** How long after boot a guest given the power-off config may take to end. */
const POWER_OFF_WAIT_MS = 30_000;

/** vmConfig with the power-off config over it, plugin sections merged. */
function powerOffOverrides(fx: Fixture, powerOff: VmConfigInput): VmConfigInput {
  const base = fx.run.options.vmConfig?.plugin;
  return { ...powerOff, ...((base ?? powerOff.plugin) && { plugin: { ...base, ...powerOff.plugin } }) };
}

/** A guest that ends by itself, no call involved: the VMM exits, and the host must hear of it as an exited event. */
const guestPowerOff: CheckDef = {
  id: 'events.guest-poweroff',
  title: 'a guest that powers itself off is reported by an exited event with code, signal and reason, and the VM is stopped',
  verifies: 'vm/event exited: a VM ending outside any call reaches the host with the published fields; the VM is then stopped.',
  needs: ['vm/create', 'vm/start'],
  run: async (fx) => {
    const powerOff = fx.run.options.powerOffConfig;
    if (!powerOff) {
      throw new SkipCheck('no power-off config: the suite cannot make this plugin\'s guest power off by itself (give one with --poweroff-config)');
    }
    const vm = await fx.createVm(powerOffOverrides(fx, powerOff));
    const mark = fx.run.wire.records.length;
    await vm.start(undefined, fx.opts('vm/start'));
    const isExit = (e: RawEvent | undefined): e is RawEvent => e?.vmId === vm.id && (e.type === 'exited' || e.type === 'crashed');
    const hit = await fx.run.wire.waitFor((r) => isExit(rawEventOf(r)), POWER_OFF_WAIT_MS, mark);
    if (!hit) fail(`the guest was given the power-off config, but no exited event arrived within ${POWER_OFF_WAIT_MS} ms of its boot`);
    const ev = rawEventOf(hit) as RawEvent;
    // The exited event is the one with the fields; a crashed one may follow it, never replace it.
    const exited = ev.type === 'exited' ? ev : fx.run.wire.records.slice(mark).map(rawEventOf).find((e) => isExit(e) && e.type === 'exited');
    if (!exited) fail(`the guest powered off, but the plugin reported ${describeRawEvent(ev)} and no exited event`);
    if (exited.problems.length) {
      fail(`the ${describeRawEvent(exited)} is malformed, so the host dropped it: ${exited.problems.join('; ')} (as sent: ${JSON.stringify(exited.params)})`);
    }
    const now = await reportedStatus(fx, vm);
    if (now !== undefined) expect(now === 'stopped', `after the guest powered off and exited was reported, vm/info says ${now}, expected stopped`);
    if (fx.advertised('vm/wait')) {
      const r = await vm.wait(undefined, fx.opts('vm/wait', 5_000));
      expect(r.status === 'stopped', `after the guest powered off, vm/wait answered status ${r.status}, expected stopped`);
    }
  },
};

/** Every event the run saw, held to its type's published fields, the time included. */
const fields: CheckDef = {
  id: 'events.fields',
  title: 'every event the plugin sent has its type\'s published fields',
  verifies: 'vm/event: vmId, seq, an RFC 3339 time and the fields of its type (exited: code, signal, reason; crashed and lost: reason; device-*: deviceId; state: state).',
  late: true,
  run: async (fx) => {
    const bad: string[] = [];
    for (const r of fx.run.wire.records) {
      const e = rawEventOf(r);
      if (!e) continue;
      const problems = [...e.problems];
      if (!problems.some((p) => p.startsWith('time:')) && !isEventTime(e.params.time)) {
        problems.push(`time ${JSON.stringify(e.params.time)} is not a date (RFC 3339) and cannot be read`);
      }
      if (problems.length) bad.push(`${describeRawEvent(e)}: ${problems.join('; ')}`);
    }
    if (bad.length) fail(`${bad.length} event(s) with wrong fields (the host drops a malformed one):\n${bad.join('\n')}`);
  },
};

export function guestEventChecks(): CheckDef[] {
  return [guestPowerOff];
}

export const eventFieldsCheck = fields;
