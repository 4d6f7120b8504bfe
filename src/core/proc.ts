import { readStat } from '../proc/index.js';

export { isAlive } from '../proc/index.js';

/** Start time in clock ticks since boot (field 22 of stat): with the pid, it names a process across pid reuse. */
export function startTimeOf(pid: number): string | undefined {
  const s = readStat(pid);
  return s ? String(s.startTicks) : undefined;
}
