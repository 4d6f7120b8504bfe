// One call at a time on one VM: most VMMs take one control request at a time, and a VM's status read at the start
// of a call must still hold when the call acts on it.
import { errors } from './errors.js';

export class SerialQueue {
  private tail: Promise<void> = Promise.resolve();

  /**
   * Runs fn after every call queued before it has finished. A call whose signal aborts while it waits its turn is
   * answered Cancelled at once and never runs; once running, fn decides what the signal means to it.
   */
  run<T>(fn: () => Promise<T> | T, signal?: AbortSignal, method?: string): Promise<T> {
    const turn = this.tail;
    let finished: () => void = () => undefined;
    this.tail = new Promise<void>((r) => (finished = r));
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
          finished();
        }
      });
    });
  }
}
