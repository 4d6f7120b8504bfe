import type { ShimVm } from 'hvplug';
import { InvalidStateError } from 'hvplug';
import type * as z from 'zod';
import { allowedFrom, LIFECYCLE, methodDef, STATUS_CHANGING, VM_METHODS, VM_STATUSES, type MethodName, type VmMethod, type VmStatus } from 'hvplug/protocol';
import { expect, expectRejection, fail, type CheckDef } from '../check.js';
import { PATH_TO, type Fixture, type PreparedStatus } from '../fixture.js';
import { expectStatus, reportedStatus } from '../vm-report.js';
import { describeSentData, sentError } from '../wire-answers.js';

/** Where a call takes a VM in a given status: a new status, gone, or refused with InvalidState. */
type Outcome = VmStatus | 'deleted' | 'refused';

const PREPARED: readonly PreparedStatus[] = ['created', 'running', 'paused', 'stopped'];

/**
 * The methods the lifecycle checks call, as the state machine marks them: those that move a VM to another status
 * (but vm/wait, whose answer waits for the VM's end), and those it allows in one status only (a snapshot needs a
 * paused VM). The rest only read or change the hardware, which the method and device checks cover.
 */
const CALLABLE: readonly VmMethod[] = VM_METHODS.filter((m) => {
  const rows = VM_STATUSES.map((s) => LIFECYCLE[m][s]);
  if (rows.some((t) => t.waits)) return false;
  // A VM handed off needs a destination prepared for it: method.vm/migrate.valid has one.
  if (methodDef(m).record === 'hand-off') return false;
  return STATUS_CHANGING.has(m) || allowedFrom(m).length === 1;
});

/**
 * Every pair of a callable method and a preparable status that LIFECYCLE settles: a forbidden one must be
 * refused, a `must` one must lead to the table's usual outcome. A `may` pair is the plugin's choice, and
 * lifecycle.table holds it to the table's outcomes only.
 */
export const TRANSITIONS: readonly { method: VmMethod; from: PreparedStatus; to: Outcome }[] = CALLABLE.flatMap((method) =>
  PREPARED.flatMap((from) => {
    const t = LIFECYCLE[method][from];
    if (t.verdict === 'may') return [];
    const to: Outcome | undefined = t.verdict === 'forbidden' ? 'refused' : t.to[0];
    return to === undefined ? [] : [{ method, from, to }];
  }),
);

/**
 * What proves a VM that refused a transition is still usable: a step the table requires from where it is, the
 * nearest one forward along create → run → stop → delete (a pause leads nowhere along it; a paused VM resumes).
 */
const FURTHER: readonly (VmStatus | 'deleted')[] = ['running', 'stopped', 'deleted'];
const rank = (to: VmStatus | 'deleted'): number => (FURTHER.includes(to) ? FURTHER.indexOf(to) : -1);
function nextStep(from: PreparedStatus): { method: VmMethod; to: VmStatus | 'deleted' } {
  const steps = CALLABLE.flatMap((method) => {
    const t = LIFECYCLE[method][from];
    const to = t.to[0];
    return t.verdict === 'must' && to !== undefined && to !== from ? [{ method, to }] : [];
  }).filter((s) => rank(s.to) >= 0);
  const later = steps.filter((s) => rank(s.to) > rank(from));
  const best = (later.length ? later : steps).sort((a, b) => rank(a.to) - rank(b.to))[0];
  if (!best) throw new Error(`the state machine has no required step out of ${from}`);
  return best;
}

/**
 * What the suite passes for the fields a transition call takes besides vmId (those of its params schema, read from
 * the method table): a short grace, a snapshot file of the check's own.
 */
function paramsFor(fx: Fixture, vm: ShimVm, method: VmMethod): Record<string, unknown> {
  const offered: Record<string, () => unknown> = { graceMs: () => 2_000, path: () => fx.path(`${vm.id}.snap`) };
  const shape = (methodDef(method).params as z.ZodObject).shape;
  return Object.fromEntries(Object.entries(offered).flatMap(([field, value]) => (field in shape ? [[field, value()]] : [])));
}

/** Calls `method` through the shim (its api name in the method table); where it leaves the VM as the plugin says. */
async function step(fx: Fixture, vm: ShimVm, method: VmMethod): Promise<VmStatus | 'deleted'> {
  const call = (vm as unknown as Record<string, (params: Record<string, unknown>, opts: unknown) => Promise<unknown>>)[methodDef(method).api];
  if (!call) throw new Error(`the shim has no ${methodDef(method).api} for ${method}`);
  const answer = await call.call(vm, paramsFor(fx, vm, method), fx.opts(method));
  const status = (answer as { status?: unknown } | null)?.status;
  if (typeof status === 'string') return status as VmStatus;
  return methodDef(method).record === 'delete' ? 'deleted' : vm.status;
}

function transitionCheck(t: (typeof TRANSITIONS)[number]): CheckDef {
  const { method, from, to } = t;
  const next = nextStep(from);
  const needs: MethodName[] = [method, ...PATH_TO[from]];
  if (to === 'refused') {
    return {
      id: `lifecycle.${method}.from-${from}`,
      title: `${method} of a ${from} VM is refused with InvalidState and leaves it usable`,
      verifies: 'The VM state machine: a forbidden transition answers InvalidState naming the current status, and changes nothing.',
      needs,
      run: async (fx) => {
        const vm = await fx.vmIn(from);
        const mark = fx.run.wire.records.length;
        const err = await expectRejection(step(fx, vm, method), 'InvalidState', `${method} of a ${from} VM`);
        // The host's typed error stands in "?" for data it cannot read: quote what the plugin sent instead.
        const sent = sentError(fx.run.wire, fx.conn.tag, method, mark);
        if (sent?.dataProblems.length) fail(`${method} of a ${from} VM: the InvalidState answer's data is malformed; ${describeSentData(sent)}`);
        if (err instanceof InvalidStateError) {
          expect(err.current === from, `InvalidState names the current status ${err.current}, the VM is ${from}`);
          expect(err.required.length > 0, 'InvalidState names no required status');
        }
        const now = await reportedStatus(fx, vm);
        if (now !== undefined) expect(now === from, `after the refused ${method}, vm/info reports ${now}, expected ${from}`);
        if (fx.advertised(next.method)) {
          const answered = await step(fx, vm, next.method).catch((e: unknown) => {
            throw new Error(`after the refused ${method}, ${next.method} failed: ${(e as Error).message}`);
          });
          await expectStatus(fx, vm, next.method, answered, next.to);
        }
      },
    };
  }
  return {
    id: `lifecycle.${method}.from-${from}`,
    title: `${method} takes a ${from} VM to ${to}`,
    verifies: 'The VM state machine: an allowed transition succeeds and the VM reports its new status.',
    needs,
    run: async (fx) => {
      const vm = await fx.vmIn(from);
      await expectStatus(fx, vm, method, await step(fx, vm, method), to);
    },
  };
}

export function lifecycleChecks(): CheckDef[] {
  return TRANSITIONS.map(transitionCheck);
}
