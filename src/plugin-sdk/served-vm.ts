// What every VM a plugin serves has, whatever its VMM: a status kept by the table's state machine, events stamped
// with its id and told once, one call at a time, vm/wait callers.
import { allowedFrom, statusAfter, type VmEvent, type VmMethod, type VmStatus } from 'hvplug/protocol';
import { errors } from './errors.js';
import { SerialQueue, type Cancellable } from './serial.js';
import type { EventInput } from './serve.js';
import { Waiters, type WaitResult } from './waiters.js';

/** An event of this VM without its vmId. */
export type VmEventBody = EventInput extends infer E ? (E extends EventInput ? Omit<E, 'vmId'> : never) : never;
/** The events that carry nothing but a status. */
export type StatusEventType = 'created' | 'running' | 'paused' | 'resumed' | 'stopped';

export class ServedVm {
  status: VmStatus;
  /** The status the host was last told, by an event or by a call's answer. */
  private announced: VmStatus | undefined;
  private readonly queue = new SerialQueue();
  protected readonly waiters = new Waiters<WaitResult>();
  /** Set by forget(): nothing about a VM reaches the host once its vm/delete has been answered. */
  protected gone = false;

  constructor(
    readonly vmId: string,
    status: VmStatus,
    private readonly send: (event: EventInput) => void,
  ) {
    this.status = status;
  }

  /**
   * Runs fn once every call queued on this VM before it is done; Cancelled if the call is cancelled while it waits.
   * `cancel` is a signal or the call's context: a context's signal is made only if the call has to wait.
   */
  exclusive<T>(fn: () => Promise<T> | T, cancel?: AbortSignal | Cancellable): Promise<T> {
    return this.queue.run(fn, cancel);
  }

  /** Throws InvalidState unless the VM is in one of `allowed`. */
  require(allowed: readonly VmStatus[]): void {
    if (!allowed.includes(this.status)) throw errors.invalidState(this.vmId, this.status, allowed);
  }

  /** Throws InvalidState when the state machine forbids `method` in the VM's status. */
  requireFor(method: VmMethod): void {
    this.require(allowedFrom(method));
  }

  /** Sends an event about this VM (stamped with its id; the SDK adds seq and time), unless the VM is deleted. */
  emit(event: VmEventBody): void {
    // Object.assign, not a spread followed by more members: V8 builds that object by a slow path (~1-3 µs, against
    // 0.1), and this runs for every event. The target is a fresh plain object: nothing but a `__proto__` member of
    // the plugin's own event could tell the two apart.
    if (!this.gone) this.send(Object.assign({}, event, { vmId: this.vmId }) as EventInput);
  }

  /** Sets the status the event implies (from the table) and tells the host, unless it was told that status already. */
  announce(type: StatusEventType): void {
    const status = statusAfter({ type } as VmEvent);
    if (status === undefined) return;
    this.status = status;
    if (this.announced === status) return;
    this.announced = status;
    this.emit({ type });
  }

  /** The host knows the status already (a vm/recover answer, an exited event): later events are relative to it. */
  assumeAnnounced(status: VmStatus): void {
    this.announced = status;
  }

  /** Whether a status has been announced since the VM came up in this process. */
  get hasAnnounced(): boolean {
    return this.announced !== undefined;
  }

  /** vm/wait: `now` when the VM is over already, else at settleWaiters(); Cancelled when the call is. */
  protected waitFor(now: WaitResult | undefined, signal: AbortSignal): Promise<WaitResult> {
    return this.waiters.wait(now, signal);
  }

  protected settleWaiters(r: WaitResult): void {
    this.waiters.settle(r);
  }

  /** The VM is deleted: nothing more is announced. */
  forget(): void {
    this.gone = true;
  }
}
