import type { MethodName, Methods } from './methods.js';
import { VM_STATUSES, type VmEvent, type VmEventType, type VmStatus } from './vm.js';

/**
 * The VM state machine: for every VM-scoped method and every status, whether the call is allowed, where it
 * leads and what it announces. The one source for the published spec, the plugin author's guide, the SDK's
 * early refusal, the shim's view of a VM's status and the conformance suite.
 */

/** The methods that act on an existing VM (scope `vm` in the method table). */
export type VmMethod = { [M in MethodName]: Methods[M]['scope'] extends 'vm' ? M : never }[MethodName];

/**
 * - `must`: the plugin MUST NOT answer InvalidState (it may still refuse for another reason: NotSupported,
 *   InvalidParams, VmmFailure);
 * - `may`: the plugin's choice: succeed, or answer InvalidState and change nothing;
 * - `forbidden`: the plugin MUST answer InvalidState and change nothing.
 */
export type Verdict = 'must' | 'may' | 'forbidden';

/** A status, or `deleted`: the VM is gone and every later call on it answers VmNotFound (vm/delete excepted). */
export type Outcome = VmStatus | 'deleted';

export interface Transition {
  readonly verdict: Verdict;
  /** The statuses a successful call may leave the VM in; empty when forbidden. The first is the usual one. */
  readonly to: readonly Outcome[];
  /**
   * The lifecycle events a successful call emits, in this order, before its answer. `state` and device
   * events are not listed: a plugin sends `state` whenever its opaque state changes.
   */
  readonly events: readonly VmEventType[];
  /** vm/wait only: the call stays pending until the VM leaves this status. */
  readonly waits?: boolean;
}

const forbidden: Transition = { verdict: 'forbidden', to: [], events: [] };
const stays = (s: VmStatus, verdict: Verdict = 'must'): Transition => ({ verdict, to: [s], events: [] });
/** A call that only reads: allowed (or left to the plugin) in `live`, `rest` elsewhere, never changing the status. */
function query(live: Verdict, rest: Verdict): Record<VmStatus, Transition> {
  const v = (s: VmStatus): Verdict => (s === 'running' || s === 'paused' ? live : rest);
  return Object.fromEntries(VM_STATUSES.map((s) => [s, stays(s, v(s))])) as Record<VmStatus, Transition>;
}
/** device/add, device/remove, resizes: whether hot or cold is possible is the capabilities' business. */
function change(verdicts: Record<VmStatus, Verdict>): Record<VmStatus, Transition> {
  return Object.fromEntries(
    VM_STATUSES.map((s) => [s, verdicts[s] === 'forbidden' ? forbidden : stays(s, verdicts[s])]),
  ) as Record<VmStatus, Transition>;
}

const deleted = (events: readonly VmEventType[] = []): Transition => ({ verdict: 'must', to: ['deleted'], events });

export const LIFECYCLE: { readonly [M in VmMethod]: { readonly [S in VmStatus]: Transition } } = {
  'vm/start': {
    created: { verdict: 'must', to: ['running'], events: ['running'] },
    running: forbidden,
    paused: forbidden,
    // A VMM that ends with its guest (Cloud Hypervisor) cannot boot again: restarting is the plugin's choice.
    stopped: { verdict: 'may', to: ['running'], events: ['running'] },
    crashed: { verdict: 'may', to: ['running'], events: ['running'] },
    lost: forbidden,
  },
  'vm/stop': {
    // Before boot there may be nothing to stop (QEMU starts at vm/start) or a VMM to end (Cloud Hypervisor).
    created: { verdict: 'may', to: ['created', 'stopped'], events: [] },
    running: { verdict: 'must', to: ['stopped'], events: ['exited'] },
    paused: { verdict: 'must', to: ['stopped'], events: ['exited'] },
    // Idempotent: stopping what does not run changes nothing and says so with success.
    stopped: stays('stopped'),
    crashed: stays('crashed'),
    lost: stays('lost'),
  },
  'vm/pause': {
    created: forbidden,
    running: { verdict: 'must', to: ['paused'], events: ['paused'] },
    // Not idempotent: a second pause is a caller's mistake worth telling.
    paused: forbidden,
    stopped: forbidden,
    crashed: forbidden,
    lost: forbidden,
  },
  'vm/resume': {
    created: forbidden,
    running: forbidden,
    paused: { verdict: 'must', to: ['running'], events: ['resumed'] },
    stopped: forbidden,
    crashed: forbidden,
    lost: forbidden,
  },
  'vm/wait': {
    // A VM that never ran has not "stopped running": vm/wait answers at once with its status.
    created: stays('created'),
    running: { verdict: 'must', to: ['stopped', 'crashed', 'lost', 'deleted'], events: [], waits: true },
    paused: { verdict: 'must', to: ['stopped', 'crashed', 'lost', 'deleted'], events: [], waits: true },
    stopped: stays('stopped'),
    crashed: stays('crashed'),
    lost: stays('lost'),
  },
  'vm/save': {
    created: forbidden,
    running: forbidden,
    paused: stays('paused'),
    stopped: forbidden,
    crashed: forbidden,
    lost: forbidden,
  },
  'vm/delete': {
    created: deleted(),
    running: deleted(['exited']),
    paused: deleted(['exited']),
    stopped: deleted(),
    crashed: deleted(),
    lost: deleted(),
  },
  'vm/migrate': {
    created: forbidden,
    // The guest leaves: no event here (the destination announces it running); later calls answer VmNotFound.
    running: { verdict: 'must', to: ['deleted'], events: [] },
    paused: { verdict: 'may', to: ['deleted'], events: [] },
    stopped: forbidden,
    crashed: forbidden,
    lost: forbidden,
  },
  'vm/check': query('must', 'must'),
  'vm/info': query('must', 'must'),
  'vm/config': query('must', 'must'),
  'vm/disconnect': query('must', 'must'),
  'vm/console': query('must', 'may'),
  'vm/agentSocket': query('must', 'may'),
  'vm/pids': query('must', 'may'),
  'vm/threads': query('must', 'may'),
  'vm/stats': query('must', 'may'),
  'device/add': change({ created: 'must', running: 'may', paused: 'may', stopped: 'may', crashed: 'may', lost: 'forbidden' }),
  'device/remove': change({ created: 'must', running: 'may', paused: 'may', stopped: 'may', crashed: 'may', lost: 'forbidden' }),
  'vm/resizeVcpus': change({ created: 'may', running: 'must', paused: 'may', stopped: 'forbidden', crashed: 'forbidden', lost: 'forbidden' }),
  'vm/resizeMemory': change({ created: 'may', running: 'must', paused: 'may', stopped: 'forbidden', crashed: 'forbidden', lost: 'forbidden' }),
};

export const VM_METHODS = Object.keys(LIFECYCLE) as VmMethod[];

export function isVmMethod(name: string): name is VmMethod {
  return Object.hasOwn(LIFECYCLE, name);
}

export function transition(method: VmMethod, from: VmStatus): Transition {
  return LIFECYCLE[method][from];
}

/** The statuses `method` may be called in: what InvalidState's `required` names. */
export function allowedFrom(method: VmMethod): VmStatus[] {
  return VM_STATUSES.filter((s) => LIFECYCLE[method][s].verdict !== 'forbidden');
}

/** Methods some allowed call of which leaves the VM in another status than it found it. */
export const STATUS_CHANGING: ReadonlySet<VmMethod> = new Set(
  VM_METHODS.filter((m) => VM_STATUSES.some((s) => LIFECYCLE[m][s].to.some((t) => t !== s))),
);

/**
 * What each event says of the VM's status. A VMM that ends is announced by `exited` (code, signal,
 * reason): its guest powered off, or vm/stop ended it. When the end was unexpected (the VMM died, was
 * killed, or failed) `crashed` follows it. `recovered` carries no status: the vm/recover answer does.
 */
export const EVENT_STATUS: { readonly [T in VmEventType]: VmStatus | undefined } = {
  created: 'created',
  running: 'running',
  resumed: 'running',
  paused: 'paused',
  stopped: 'stopped',
  exited: 'stopped',
  crashed: 'crashed',
  lost: 'lost',
  recovered: undefined,
  'device-added': undefined,
  'device-removed': undefined,
  state: undefined,
};

/**
 * How a VMM can end outside any call, and the lifecycle events the plugin MUST send for each, in this
 * order (the rule exited-crashed); the VM's status afterwards is the last one's (EVENT_STATUS).
 */
export const VMM_ENDS: { readonly [K in 'guest-poweroff' | 'killed']: readonly VmEventType[] } = {
  // The guest asked for it: a clean end.
  'guest-poweroff': ['exited'],
  // Nobody asked: the VMM died, was killed or failed.
  killed: ['exited', 'crashed'],
};

/** The status a VM has after an event, where the event implies one. */
export function statusAfter(event: VmEvent): VmStatus | undefined {
  return EVENT_STATUS[event.type];
}
