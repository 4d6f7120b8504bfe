import type { ResultInputOf } from 'hvplug/protocol';
import { CLOCK_TICKS_PER_SECOND, readStat, readStatusNumbers, systemUptimeMs, threadIds } from './proc.js';

/** Resource use of the guest process, all of it from /proc; undefined when the process is gone. */
export function processStats(pid: number, counters: Record<string, number>): ResultInputOf<'vm/stats'> | undefined {
  const stat = readStat(pid);
  if (!stat) return undefined;
  const status = readStatusNumbers(pid);
  const msPerTick = 1000 / CLOCK_TICKS_PER_SECOND;
  return {
    cpuTimeMs: (stat.utimeTicks + stat.stimeTicks) * msPerTick,
    memoryRssBytes: (status.get('VmRSS') ?? 0) * 1024,
    uptimeMs: Math.max(0, systemUptimeMs() - stat.startTime * msPerTick),
    counters: {
      threads: stat.threads,
      voluntaryContextSwitches: status.get('voluntary_ctxt_switches') ?? 0,
      involuntaryContextSwitches: status.get('nonvoluntary_ctxt_switches') ?? 0,
      ...counters,
    },
  };
}

/**
 * vCPU i is the guest's i-th thread, main thread first. The guest is started with a thread pool of
 * vcpus.max threads, so every vCPU that can come online has a real host thread to be pinned.
 */
export function vcpuThreads(pid: number, vcpus: number): { cpu: number; tid: number }[] {
  return threadIds(pid)
    .slice(0, vcpus)
    .map((tid, cpu) => ({ cpu, tid }));
}
