import { bootId, readStat } from '../proc/index.js';

export { bootId, isAlive, outlived } from '../proc/index.js';

/** Start time in clock ticks since boot (field 22 of stat): with the pid, it names a process across pid reuse. */
export function startTimeOf(pid: number): string | undefined {
  const s = readStat(pid);
  return s ? String(s.startTicks) : undefined;
}

/** Whether the process that wrote a lease or a lock (its pid, start time and boot) still runs. */
export function ownerAlive(owner: { readonly pid: number; readonly startTime: string; readonly bootId: string }): boolean {
  return owner.bootId === bootId() && startTimeOf(owner.pid) === owner.startTime;
}
