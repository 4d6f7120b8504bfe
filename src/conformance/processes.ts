import { isAlive, startTimeOf } from 'hvplug';

export { isAlive };

/**
 * The processes a run started or learned of, each remembered with its start time, so that the final
 * sweep kills those processes and never a stranger that inherited one of their pids.
 */
export class ProcessLedger {
  private readonly known = new Map<number, string | undefined>();

  note(pid: number): void {
    if (!this.known.has(pid)) this.known.set(pid, startTimeOf(pid));
  }

  has(pid: number): boolean {
    return this.known.has(pid);
  }

  get pids(): number[] {
    return [...this.known.keys()];
  }

  /** Still the process that was noted, and still running. */
  alive(pid: number): boolean {
    if (!isAlive(pid)) return false;
    const start = this.known.get(pid);
    return start === undefined || start === startTimeOf(pid);
  }

  /** SIGKILLs those of `pids` (default: all) that still run; answers which it had to kill. */
  killAll(pids: Iterable<number> = this.known.keys(), opts: { group?: boolean } = {}): number[] {
    const killed: number[] = [];
    for (const pid of pids) {
      if (!this.alive(pid)) continue;
      try {
        process.kill(opts.group ? -pid : pid, 'SIGKILL');
        killed.push(pid);
      } catch {
        try {
          // Not a group leader after all: the process alone.
          process.kill(pid, 'SIGKILL');
          killed.push(pid);
        } catch {
          // Gone meanwhile.
        }
      }
    }
    return killed;
  }
}

