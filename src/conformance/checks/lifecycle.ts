import type { ShimVm } from 'hvplug';
import { InvalidStateError } from 'hvplug';
import { LIFECYCLE, type MethodName, type VmStatus } from 'hvplug/protocol';
import { expect, expectRejection, fail, type CheckDef } from '../check.js';
import { PATH_TO, type Fixture, type PreparedStatus } from '../fixture.js';
import { expectStatus, reportedStatus } from '../vm-report.js';
import { describeSentData, sentError } from '../wire-answers.js';

type TransitionMethod = 'vm/start' | 'vm/stop' | 'vm/pause' | 'vm/resume' | 'vm/save' | 'vm/delete';

/** Where a call takes a VM in a given status: a new status, gone, or refused with InvalidState. */
type Outcome = VmStatus | 'deleted' | 'refused';

/** The methods these checks know how to call (see step), and the statuses the suite can bring a VM to. */
const CALLABLE: readonly TransitionMethod[] = ['vm/start', 'vm/stop', 'vm/pause', 'vm/resume', 'vm/save', 'vm/delete'];
const PREPARED: readonly PreparedStatus[] = ['created', 'running', 'paused', 'stopped'];

/**
 * Every pair of a callable method and a preparable status that LIFECYCLE settles: a forbidden one must be
 * refused, a `must` one must lead to the table's usual outcome. A `may` pair is the plugin's choice, and
 * lifecycle.table holds it to the table's outcomes only.
 */
export const TRANSITIONS: readonly { method: TransitionMethod; from: PreparedStatus; to: Outcome }[] = CALLABLE.flatMap((method) =>
  PREPARED.flatMap((from) => {
    const t = LIFECYCLE[method][from];
    if (t.verdict === 'may') return [];
    const to: Outcome | undefined = t.verdict === 'forbidden' ? 'refused' : t.to[0];
    return to === undefined ? [] : [{ method, from, to }];
  }),
);

/** What proves a VM refused a transition is still usable: the next allowed step from where it is. */
const NEXT_STEP: Record<PreparedStatus, { method: TransitionMethod; to: VmStatus | 'deleted' }> = {
  created: { method: 'vm/start', to: 'running' },
  running: { method: 'vm/stop', to: 'stopped' },
  paused: { method: 'vm/resume', to: 'running' },
  stopped: { method: 'vm/delete', to: 'deleted' },
};

async function step(fx: Fixture, vm: ShimVm, method: TransitionMethod): Promise<VmStatus | 'deleted'> {
  switch (method) {
    case 'vm/start':
      return (await vm.start(undefined, fx.opts(method))).status;
    case 'vm/stop':
      return (await vm.stop({ graceMs: 2_000 }, fx.opts(method))).status;
    case 'vm/pause':
      return (await vm.pause(undefined, fx.opts(method))).status;
    case 'vm/resume':
      return (await vm.resume(undefined, fx.opts(method))).status;
    case 'vm/save':
      await vm.save({ path: fx.path(`${vm.id}.snap`) }, fx.opts(method));
      return vm.status;
    case 'vm/delete':
      await vm.delete(undefined, fx.opts(method));
      return 'deleted';
  }
}

function transitionCheck(t: (typeof TRANSITIONS)[number]): CheckDef {
  const { method, from, to } = t;
  const next = NEXT_STEP[from];
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
