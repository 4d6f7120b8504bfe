// vm/wait callers of one VM: answered together once the VM is over, or dropped when they cancel.
import type { VmStatus } from 'hvplug/protocol';

export interface WaitResult {
  status: VmStatus;
  exitCode: number | null;
  reason: string;
}

export class Waiters {
  private readonly pending = new Set<(r: WaitResult) => void>();

  /** Resolves with `now` if the VM is already over, else at settle(); rejects when the signal aborts. */
  wait(now: WaitResult | undefined, signal: AbortSignal): Promise<WaitResult> {
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const done = (r: WaitResult): void => {
        signal.removeEventListener('abort', onAbort);
        resolve(r);
      };
      const onAbort = (): void => {
        this.pending.delete(done);
        reject(new Error('vm/wait was cancelled'));
      };
      this.pending.add(done);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  settle(r: WaitResult): void {
    for (const w of [...this.pending]) w(r);
    this.pending.clear();
  }
}
