// vm/wait callers of one VM: answered together once the VM is over, or dropped (and answered Cancelled) when they cancel.
import { LIFECYCLE, VM_METHODS, type VmStatus } from 'hvplug/protocol';
import { errors } from './errors.js';

export interface WaitResult {
  status: VmStatus;
  exitCode: number | null;
  reason: string;
}

/** The method that waits for a VM's end, as the state machine marks it. */
const WAIT_METHOD = VM_METHODS.find((m) => Object.values(LIFECYCLE[m]).some((t) => t.waits === true));

export class Waiters<R = WaitResult> {
  private readonly pending = new Set<(r: R) => void>();

  /** How many callers wait now: a caller whose call was cancelled is not among them. */
  get size(): number {
    return this.pending.size;
  }

  /** Resolves with `now` if there is a result already, else at settle(); rejects with Cancelled when the signal aborts. */
  wait(now: R | undefined, signal: AbortSignal): Promise<R> {
    if (now !== undefined) return Promise.resolve(now);
    if (signal.aborted) return Promise.reject(errors.cancelled(WAIT_METHOD));
    return new Promise((resolve, reject) => {
      const done = (r: R): void => {
        signal.removeEventListener('abort', onAbort);
        resolve(r);
      };
      const onAbort = (): void => {
        this.pending.delete(done);
        reject(errors.cancelled(WAIT_METHOD));
      };
      this.pending.add(done);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Answers every caller waiting now. */
  settle(r: R): void {
    const all = [...this.pending];
    this.pending.clear();
    for (const w of all) w(r);
  }
}
