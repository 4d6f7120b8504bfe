import { readFileSync } from 'node:fs';

/** The fields of /proc/<pid>/stat after the command name (which may itself hold spaces and parens). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Alive means /proc has it and it is not a zombie waiting to be reaped. */
export function isAlive(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state !== undefined && state !== 'Z' && state !== 'X';
}

/** Start time in clock ticks since boot (field 22 of stat): with the pid, it names a process across pid reuse. */
function startTimeOf(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

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
