// One call at a time on one VM: most VMMs take one control request at a time, and a VM's status read at the start
// of a call must still hold when the call acts on it.
import { errors } from './errors.js';

/**
 * A call's cancellation as its context (CallContext) holds it: `cancelled` is read without making the signal, which
 * costs an AbortController and its listeners; the signal is made only for a call that has to wait its turn.
 */
export interface Cancellable {
  readonly signal: AbortSignal;
  readonly cancelled: boolean;
}

const isSignal = (c: AbortSignal | Cancellable): c is AbortSignal => c instanceof AbortSignal;

export class SerialQueue {
  private tail: Promise<void> = Promise.resolve();
  /** Calls taken and not finished: none, and the next one waits for nothing. */
  private pending = 0;

  /**
   * Runs fn after every call queued before it has finished. A call cancelled while it waits its turn is answered
   * Cancelled at once and never runs; once running, fn decides what the cancellation means to it. `cancel` is a
   * signal, or a call's context (Cancellable).
   */
  run<T>(fn: () => Promise<T> | T, cancel?: AbortSignal | Cancellable, method?: string): Promise<T> {
    const turn = this.tail;
    const waits = this.pending > 0;
    this.pending++;
    let finished: () => void = () => undefined;
    this.tail = new Promise<void>((r) => (finished = r));
    const finish = (): void => {
      this.pending--;
      finished();
    };
    // Nothing to wait for: fn starts a microtask from now, so a cancellation can only come before it; it is looked
    // at then, and no signal is made (or listened to) for the call.
    if (!waits) return this.runIdle(fn, cancel, method, finish);
    const signal = cancel === undefined || isSignal(cancel) ? cancel : cancel.signal;
    return new Promise<T>((resolve, reject) => {
      let cancelled = false;
      const onAbort = (): void => {
        cancelled = true;
        reject(errors.cancelled(method));
      };
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
      void turn.then(async () => {
        signal?.removeEventListener('abort', onAbort);
        try {
          if (!cancelled) resolve(await fn());
        } catch (err) {
          reject(err);
        } finally {
          finish();
        }
      });
    });
  }

  private async runIdle<T>(fn: () => Promise<T> | T, cancel: AbortSignal | Cancellable | undefined, method: string | undefined, finish: () => void): Promise<T> {
    try {
      await undefined;
      if (cancel !== undefined && (isSignal(cancel) ? cancel.aborted : cancel.cancelled)) throw errors.cancelled(method);
      return await fn();
    } finally {
      finish();
    }
  }
}
