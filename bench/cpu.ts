import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time of every thread of a process, in µs, from /proc/<pid>/task/<tid>/schedstat (nanoseconds; /proc/<pid>/stat
 * counts in 10 ms ticks). A thread that ends meanwhile is left out.
 */
export function threadsCpuUs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return ns / 1000;
}

/** This process's CPU time in µs, every thread. */
export function ownCpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/**
 * Runs `seg` (which makes `calls` calls) and returns what it returned with the CPU µs per call this process and
 * process `peer` spent meanwhile: where a call's time goes on each side.
 */
export async function withCpuPerCall<T>(peer: number, calls: number, seg: () => Promise<T>): Promise<{ value: T; ownUs: number; peerUs: number }> {
  const own0 = ownCpuUs();
  const peer0 = threadsCpuUs(peer);
  const value = await seg();
  return { value, ownUs: (ownCpuUs() - own0) / calls, peerUs: (threadsCpuUs(peer) - peer0) / calls };
}
