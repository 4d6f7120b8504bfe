import type { ShimVm } from 'hvplug';
import { EVENT_STATUS, VMM_ENDS, type VmEventType, type VmStatus } from 'hvplug/protocol';
import { fail, SkipCheck, within } from './check.js';
import type { Fixture } from './fixture.js';
import { isAlive } from './processes.js';
import { rawEventOf, type RawEvent } from './raw-events.js';

/** How long the plugin has, once its VMM is dead, to send the events VMM_ENDS asks for. */
export const KILL_EVENTS_MS = 3_000;

/** What a killed VMM must give, per the table: the events in order, and the status the last one leaves. */
export const KILLED: { events: readonly VmEventType[]; status: VmStatus } = {
  events: VMM_ENDS.killed,
  status: VMM_ENDS.killed.map((t) => EVENT_STATUS[t]).filter((s) => s !== undefined).at(-1) ?? 'stopped',
};

/** Whether an event type says something of the VM's status (the table's events column lists only these). */
export function isLifecycleEvent(type: string | undefined): boolean {
  return type !== undefined && Object.hasOwn(EVENT_STATUS, type) && EVENT_STATUS[type as VmEventType] !== undefined;
}

/** The lifecycle events of `vmId` on the wire since record `mark`, as sent (malformed ones included). */
export function lifecycleEventsSince(fx: Fixture, vmId: string, mark: number): RawEvent[] {
  return fx.run.wire.records
    .slice(mark)
    .map(rawEventOf)
    .filter((e): e is RawEvent => e?.vmId === vmId && isLifecycleEvent(e.type));
}

/** Whether `want` appears in `seen` in order, other events between allowed. */
export function inOrder(seen: readonly (string | undefined)[], want: readonly string[]): boolean {
  let i = 0;
  for (const t of seen) if (t === want[i]) i++;
  return i === want.length;
}

/**
 * SIGKILLs the VM's processes as the plugin reports them (playing a VMM crash) and waits until they are
 * gone; answers the pids and the wire mark taken just before. A skip when the plugin cannot name them.
 */
export async function killVmm(fx: Fixture, vm: ShimVm): Promise<{ pids: number[]; mark: number }> {
  if (!fx.advertised('vm/info') && !fx.advertised('vm/pids')) throw new SkipCheck('neither vm/info nor vm/pids is advertised: the VMM\'s pid is unknown');
  const pids = await fx.vmPids(vm);
  if (!pids.length) throw new SkipCheck('the plugin reports no pid for a running VM');
  const mark = fx.run.wire.records.length;
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  if (!(await within(2_000, () => pids.every((p) => !isAlive(p)), fx.signal))) fail(`the VM's processes ${pids.join(', ')} were SIGKILLed but live 2000 ms later`);
  return { pids, mark };
}

/** Waits until the VM's lifecycle events since `mark` include what a killed VMM must send; answers them. */
export async function killedEvents(fx: Fixture, vmId: string, mark: number): Promise<RawEvent[]> {
  const types = (): (string | undefined)[] => lifecycleEventsSince(fx, vmId, mark).map((e) => e.type);
  await within(KILL_EVENTS_MS, () => inOrder(types(), KILLED.events), fx.signal);
  return lifecycleEventsSince(fx, vmId, mark);
}
