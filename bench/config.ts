/** Sizes of every figure. `full` is what the README's numbers come from; `quick` only proves the code runs. */
export interface BenchConfig {
  roundtrip: { warmup: number; calls: number; reps: number };
  throughput: { warmup: number; total: number; window: number; reps: number };
  coldstart: { warmup: number; reps: number };
  /** smallRuns: how many times the small workload runs per repetition, to have calls enough for its p99. */
  scale: { large: number; small: number; smallRuns: number; concurrency: number; reps: number };
  qemu: { reps: number; timeoutMs: number; enabled: boolean };
  /** Pause + resume cycles per repetition (reps, timeout and enabled are qemu's). */
  qemuPause: { warmup: number; cycles: number };
  recovery: { vms: number; reps: number };
  /** runs: decodes per repetition, of which the median counts (one decode is a few ms). */
  framing: { reps: number; runs: number };
  /** runs of `seconds` each under a steady flood of events. */
  eventFlood: { reps: number; seconds: number };
  /** Each repetition spawns every process of the figure once (a few seconds in all). */
  footprint: { reps: number };
  /** CLI commands through the daemon; each repetition spawns a dozen processes. */
  daemon: { warmup: number; reps: number };
}

export const FULL: BenchConfig = {
  roundtrip: { warmup: 3_000, calls: 2_000, reps: 15 },
  throughput: { warmup: 20_000, total: 100_000, window: 1_000, reps: 5 },
  coldstart: { warmup: 5, reps: 25 },
  scale: { large: 1_000, small: 10, smallRuns: 20, concurrency: 10, reps: 2 },
  qemu: { reps: 7, timeoutMs: 60_000, enabled: true },
  qemuPause: { warmup: 500, cycles: 100 },
  recovery: { vms: 100, reps: 7 },
  framing: { reps: 15, runs: 7 },
  eventFlood: { reps: 2, seconds: 10 },
  footprint: { reps: 7 },
  daemon: { warmup: 3, reps: 15 },
};

export const QUICK: BenchConfig = {
  roundtrip: { warmup: 50, calls: 200, reps: 2 },
  throughput: { warmup: 100, total: 1_000, window: 50, reps: 2 },
  coldstart: { warmup: 0, reps: 2 },
  scale: { large: 20, small: 4, smallRuns: 2, concurrency: 4, reps: 1 },
  // A QEMU boot takes seconds; the quick configuration reports the figure as not measured instead.
  qemu: { reps: 1, timeoutMs: 60_000, enabled: false },
  qemuPause: { warmup: 2, cycles: 2 },
  recovery: { vms: 5, reps: 2 },
  framing: { reps: 2, runs: 1 },
  eventFlood: { reps: 1, seconds: 3 },
  footprint: { reps: 1 },
  daemon: { warmup: 0, reps: 2 },
};
