import type { VmEvent } from 'hvplug/protocol';

/** Why a `run` stops. Only the first reason counts; later ones may only escalate the stop. */
export type EndReason =
  | { kind: 'interrupted'; signal: NodeJS.Signals }
  | { kind: 'timeout'; seconds: number }
  | { kind: 'guest'; event: VmEvent }
  /** vm/wait answered: the guest ended, and no event said so (the plugin's may have been dropped). */
  | { kind: 'waited'; status: string; exitCode: number | null; reason: string; dropped: string[] }
  | { kind: 'plugin-failed'; error: Error };

/** Event types after which the guest is gone and there is nothing left to wait for. */
export const GUEST_END_EVENTS: readonly VmEvent['type'][] = ['exited', 'stopped', 'crashed', 'lost'];

/**
 * The one place a run learns it should end: a signal, the --timeout, the guest going away, or the
 * plugin giving up. Calls in flight take `signal`, so Ctrl-C during a slow boot cancels the boot.
 */
export class RunEnding {
  private readonly ended = new AbortController();
  private readonly forced = new AbortController();
  private first: EndReason | undefined;
  private resolveDone: (r: EndReason) => void = () => undefined;
  readonly done: Promise<EndReason> = new Promise((resolve) => (this.resolveDone = resolve));

  get signal(): AbortSignal {
    return this.ended.signal;
  }

  /** Aborts a graceful stop in progress (a second Ctrl-C). */
  get forceSignal(): AbortSignal {
    return this.forced.signal;
  }

  get reason(): EndReason | undefined {
    return this.first;
  }

  /** Returns whether this was the first reason. */
  end(reason: EndReason): boolean {
    if (this.first) return false;
    this.first = reason;
    this.ended.abort(reason);
    this.resolveDone(reason);
    return true;
  }

  force(): void {
    this.forced.abort(new Error('forced'));
  }
}

/**
 * SIGINT/SIGTERM: the first asks for a clean stop, the second forces the VM down, the third leaves at
 * once (the plugins see stdin EOF and exit; the VM may be left running, and we say so).
 */
export function watchSignals(ending: RunEnding, onEscalate: (signal: NodeJS.Signals, step: 'force' | 'leave') => void): () => void {
  let step: 'stop' | 'force' | 'leave' = 'stop';
  const handler = (signal: NodeJS.Signals): void => {
    if (step === 'stop') {
      step = 'force';
      // A signal while a stop is already under way (timeout, guest end) means: hurry.
      if (ending.end({ kind: 'interrupted', signal })) return;
    }
    if (step === 'force') {
      step = 'leave';
      ending.force();
      onEscalate(signal, 'force');
      return;
    }
    onEscalate(signal, 'leave');
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
  for (const s of signals) process.on(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}
