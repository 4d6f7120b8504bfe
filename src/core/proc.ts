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
export function startTimeOf(pid: number): string | undefined {
  return statFields(pid)?.[19];
}
