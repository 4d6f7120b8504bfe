// One side's property, for the quick run (vitest) and the long run (scripts/fuzz.mjs) alike.
import fc from 'fast-check';
import { describeInput, fuzzInput, type FuzzInput } from './frames.js';
import { HOST_PENDING_IDS, hostCaseProblem, runHostCase } from './host-side.js';
import { runSdkCase, sdkCaseProblem, useFuzzCap } from './sdk-side.js';
import type { CrashWatch } from './watch.js';

export type Side = 'host' | 'sdk';

export interface SideRun {
  side: Side;
  seed: number;
  runs: number;
  /** Cases run, shrinking included. */
  cases: number;
  ms: number;
  /** The first failure, shrunk: the counterexample, what went wrong, and the path to replay it. */
  failure: string | undefined;
}

function property(side: Side, watch: CrashWatch, count: () => void): fc.IAsyncPropertyWithHooks<[FuzzInput]> {
  if (side === 'sdk') useFuzzCap();
  const arb = fuzzInput(side === 'host' ? HOST_PENDING_IDS : []);
  return fc.asyncProperty(arb, async (input) => {
    count();
    const problem = await problemOf(side, input, watch);
    if (problem) throw new Error(problem);
  });
}

/** The problem of one case, or undefined. */
async function problemOf(side: Side, input: FuzzInput, watch: CrashWatch): Promise<string | undefined> {
  return side === 'host' ? hostCaseProblem(input, await runHostCase(input, watch)) : sdkCaseProblem(input, await runSdkCase(input, watch));
}

export interface Survey {
  cases: number;
  ms: number;
  /** Problem (its first line) → how often, and the smallest input that showed it. */
  problems: Map<string, { count: number; example: FuzzInput; detail: string }>;
}

/**
 * Every case of a seed run to the end, without stopping at the first failure or shrinking: which distinct
 * problems a seed finds, and how often, for a bug report.
 */
const size = (i: FuzzInput): number => i.pieces.reduce((n, p) => n + p.bytes.length, 0);

export async function surveySide(side: Side, watch: CrashWatch, opts: { seed: number; runs: number; progress?: (cases: number) => void }): Promise<Survey> {
  if (side === 'sdk') useFuzzCap();
  const arb = fuzzInput(side === 'host' ? HOST_PENDING_IDS : []);
  const problems: Survey['problems'] = new Map();
  const started = performance.now();
  // Drawn a batch at a time (batch b from seed + b): 100,000 inputs drawn at once hold gigabytes of deep nestings.
  const BATCH = 1_000;
  let cases = 0;
  for (let b = 0; cases < opts.runs; b++) {
    for (const input of fc.sample(arb, { seed: opts.seed + b, numRuns: Math.min(BATCH, opts.runs - cases) })) {
      opts.progress?.(++cases);
      const problem = await problemOf(side, input, watch);
      if (!problem) continue;
      const key = problem.split('\n')[0]!.replace(/\d+/g, 'N').slice(0, 160);
      const seen = problems.get(key);
      if (!seen) problems.set(key, { count: 1, example: input, detail: problem });
      else {
        seen.count++;
        if (size(input) < size(seen.example)) Object.assign(seen, { example: input, detail: problem });
      }
    }
  }
  return { cases, ms: performance.now() - started, problems };
}

export async function fuzzSide(
  side: Side,
  watch: CrashWatch,
  opts: {
    seed: number;
    runs: number;
    path?: string;
    /** Stops running (and shrinking) after this long. */
    timeLimitMs?: number;
    progress?: (cases: number) => void;
  },
): Promise<SideRun> {
  let cases = 0;
  const started = performance.now();
  const count = (): void => {
    cases++;
    opts.progress?.(cases);
  };
  const details = await fc.check(property(side, watch, count), {
    seed: opts.seed,
    numRuns: opts.runs,
    path: opts.path,
    interruptAfterTimeLimit: opts.timeLimitMs,
  });
  const ms = performance.now() - started;
  let failure: string | undefined;
  if (details.failed) {
    const input = details.counterexample?.[0];
    const err = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    failure = [
      `${side}: property failed after ${details.numRuns} runs (seed ${details.seed}, path "${details.counterexamplePath ?? ''}", shrunk ${details.numShrinks} times)`,
      `problem: ${err}`,
      `counterexample:\n${input ? describeInput(input) : '(none)'}`,
    ].join('\n');
  }
  if (details.interrupted && !details.failed) {
    failure = `${side}: interrupted after ${details.numRuns} of ${opts.runs} runs (seed ${details.seed}): too slow to tell`;
  }
  return { side, seed: opts.seed, runs: details.numRuns, cases, ms, failure };
}
