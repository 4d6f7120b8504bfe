import type { ShimVm } from 'hvplug';
import { InvalidStateError } from 'hvplug';
import { LIFECYCLE, VM_METHODS, VM_STATUSES, type VmMethod, type VmStatus } from 'hvplug/protocol';
import { describeError, fail, SkipCheck, within, type CheckDef } from '../check.js';
import { PATH_TO, type Fixture, type PreparedStatus } from '../fixture.js';
import { inOrder, KILL_EVENTS_MS, KILLED, killVmm, lifecycleEventsSince } from '../vmm-kill.js';

/** The statuses the suite brings a VM to: through the protocol's own calls, and `crashed` by killing its VMM. */
type Reachable = PreparedStatus | 'crashed';
const REACHABLE: readonly Reachable[] = ['created', 'running', 'paused', 'stopped', 'crashed'];
/** How long a call the table says answers at once (vm/wait off a live VM) may take before it counts as waiting. */
const AT_ONCE_MS = 5_000;

// device/add needs a device the plugin can attach in that status (the device checks try each one); vm/delete
// from every status has its own checks (lifecycle.vm/delete.from-*), and ends this check's VMs in its cleanup;
// vm/migrate needs a destination, and its case (method.vm/migrate.valid) prepares one.
const SKIPPED: ReadonlySet<VmMethod> = new Set(['device/add', 'vm/delete', 'vm/migrate']);

function paramsFor(fx: Fixture, method: VmMethod, vm: ShimVm): Record<string, unknown> {
  const base = { vmId: vm.id };
  switch (method) {
    case 'vm/stop':
      return { ...base, force: true, graceMs: 0 };
    case 'vm/save':
      return { ...base, path: fx.path(`${vm.id}.table.snap`) };
    case 'device/remove':
      return { ...base, deviceId: 'no-such-device' };
    case 'vm/resizeVcpus':
      return { ...base, count: vm.config.vcpus.boot };
    case 'vm/resizeMemory':
      return { ...base, sizeMiB: vm.config.memory.sizeMiB };
    default:
      return base;
  }
}

/** What the VM's status is now, as the plugin says: the answer's status, else vm/info's. */
async function statusNow(fx: Fixture, vm: ShimVm, answer: unknown): Promise<string | undefined> {
  const s = (answer as { status?: unknown } | null)?.status;
  if (typeof s === 'string') return s;
  if (!fx.advertised('vm/info')) return undefined;
  return ((await fx.raw('vm/info', { vmId: vm.id })) as { status?: string }).status;
}

/** Tries one (status, method) pair on `vm`; returns what was wrong, if anything. */
async function tryPair(fx: Fixture, vm: ShimVm, from: VmStatus, method: VmMethod): Promise<string | undefined> {
  const t = LIFECYCLE[method][from];
  const pair = `${method} in ${from}`;
  const mark = fx.run.wire.records.length;
  let answer: unknown;
  try {
    answer = await fx.raw(method, paramsFor(fx, method, vm), method === 'vm/wait' ? AT_ONCE_MS : undefined);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code !== 'InvalidState') {
      if (t.verdict === 'forbidden') return `${pair}: expected InvalidState, got ${describeError(err)}`;
      if (method === 'vm/wait' && code === 'Timeout') return `${pair}: vm/wait did not answer within ${AT_ONCE_MS} ms; on a VM that is not running or paused it answers at once`;
      return undefined;
    }
    if (t.verdict === 'must') return `${pair}: answered InvalidState, but the state machine requires it to be accepted (${describeError(err)})`;
    const e = err as InvalidStateError;
    const wrong: string[] = [];
    if (e.vmId !== vm.id) wrong.push(`data.vmId ${JSON.stringify(e.vmId)}, not ${vm.id}`);
    if (e.current !== from) wrong.push(`data.current ${JSON.stringify(e.current)}, not ${from}`);
    if (e.required.length === 0 || !e.required.every((r) => (VM_STATUSES as readonly string[]).includes(r))) {
      wrong.push(`data.required ${JSON.stringify(e.required)} is not a non-empty list of statuses`);
    } else if (e.required.includes(from)) wrong.push(`data.required ${JSON.stringify(e.required)} names the current status`);
    if (wrong.length) return `${pair}: InvalidState with malformed data: ${wrong.join('; ')} (the host read ${JSON.stringify({ vmId: e.vmId, current: e.current, required: e.required })})`;
    const now = await statusNow(fx, vm, undefined);
    return now === undefined || now === from ? undefined : `${pair}: refused with InvalidState, but the VM is ${now} afterwards`;
  }
  if (t.verdict === 'forbidden') {
    return `${pair}: succeeded (${JSON.stringify(answer)}), but the state machine forbids it: it must answer InvalidState (required: ${VM_STATUSES.filter((s) => LIFECYCLE[method][s].verdict !== 'forbidden').join(', ')})`;
  }
  const now = await statusNow(fx, vm, answer);
  if (now !== undefined && !(t.to as readonly string[]).includes(now)) return `${pair}: succeeded, and the VM is ${now}; the state machine says ${t.to.join(' or ')}`;
  // The events column: sent before the answer, so on the wire by now (other events between are allowed).
  const seen = lifecycleEventsSince(fx, vm.id, mark).map((e) => e.type);
  if (!inOrder(seen, t.events)) {
    return `${pair}: succeeded, but the plugin sent ${seen.length ? `the lifecycle events ${seen.join(', ')}` : 'no lifecycle event'}; the state machine says ${t.events.join(' then ')}`;
  }
  return undefined;
}

/**
 * A VM whose VMM the suite killed, once the plugin calls it crashed (vm/info, else its crashed event);
 * undefined when it cannot be made one: no pid to kill, or the plugin reports something else, which
 * events.vmm-exit reports.
 */
async function crashedVm(fx: Fixture): Promise<ShimVm | undefined> {
  const vm = await fx.vmIn('running');
  let mark: number;
  try {
    ({ mark } = await killVmm(fx, vm));
  } catch (err) {
    if (err instanceof SkipCheck) return undefined;
    throw err;
  }
  const lastEvent = KILLED.events.at(-1);
  const crashed = await within(
    KILL_EVENTS_MS,
    async () => (fx.advertised('vm/info') ? (await statusNow(fx, vm, undefined)) === KILLED.status : lifecycleEventsSince(fx, vm.id, mark).some((e) => e.type === lastEvent)),
    fx.signal,
  );
  return crashed ? vm : undefined;
}

async function vmIn(fx: Fixture, status: Reachable): Promise<ShimVm | undefined> {
  return status === 'crashed' ? crashedVm(fx) : fx.vmIn(status);
}

function canReach(fx: Fixture, status: Reachable): boolean {
  if (status !== 'crashed') return PATH_TO[status].every((m) => fx.advertised(m));
  return PATH_TO.running.every((m) => fx.advertised(m)) && (fx.advertised('vm/info') || fx.advertised('vm/pids'));
}

/**
 * Every advertised VM-scoped method in every status the suite can bring a VM to, against LIFECYCLE. One VM
 * per status takes every call that leaves it where it is; a call that moves it gets a VM of its own, the
 * last one the status's own VM, so the number of VMs stays that of the statuses plus the moves (one
 * crashed VM: only vm/start moves one, and only where the plugin restarts crashed VMs).
 */
export const lifecycleTableCheck: CheckDef = {
  id: 'lifecycle.table',
  title: 'every advertised VM method, in every status a VM can be brought to, does what the state machine says',
  verifies: 'The VM state machine (x-hvplug-lifecycle): forbidden pairs answer InvalidState with {vmId, current, required} and change nothing; allowed pairs are not refused with InvalidState, send the events the table names in order before the answer, and leave the VM in a status the table names. A crashed VM is one whose VMM the suite killed.',
  needs: ['vm/create'],
  run: async (fx) => {
    const problems: string[] = [];
    const methodsHere = VM_METHODS.filter((m) => fx.advertised(m) && !SKIPPED.has(m));
    for (const from of REACHABLE) {
      if (!canReach(fx, from)) continue;
      const staying = methodsHere.filter((m) => LIFECYCLE[m][from].verdict === 'forbidden' || LIFECYCLE[m][from].to.every((s) => s === from));
      const moving = methodsHere.filter((m) => !staying.includes(m) && !LIFECYCLE[m][from].waits);
      const vm = await vmIn(fx, from);
      if (!vm) continue;
      // vm/disconnect last among the calls that stay: the plugin re-attaches for the ones after it.
      for (const m of [...staying.filter((x) => x !== 'vm/disconnect'), ...staying.filter((x) => x === 'vm/disconnect')]) {
        const p = await tryPair(fx, vm, from, m);
        if (p) problems.push(p);
      }
      for (const [i, m] of moving.entries()) {
        const target = i === moving.length - 1 ? vm : await vmIn(fx, from);
        if (!target) continue;
        const p = await tryPair(fx, target, from, m);
        if (p) problems.push(p);
      }
    }
    if (problems.length) fail(`${problems.length} (status, method) pair${problems.length === 1 ? ' disagrees' : 's disagree'} with the state machine: ${problems.join(' | ')}`);
  },
};
