/** Order statistics over samples; the bench reports medians and spreads, never means (one GC pause skews a mean). */

export function sorted(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** Quantile by linear interpolation between closest ranks (q in 0..1). */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = sorted(xs);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = s[lo] as number;
  const b = s[hi] as number;
  return a + (b - a) * (pos - lo);
}

export const median = (xs: readonly number[]): number => quantile(xs, 0.5);

export interface Spread {
  median: number;
  min: number;
  max: number;
  q1: number;
  q3: number;
  n: number;
}

export function spread(xs: readonly number[]): Spread {
  const s = sorted(xs);
  return {
    median: quantile(s, 0.5),
    min: s[0] ?? Number.NaN,
    max: s[s.length - 1] ?? Number.NaN,
    q1: quantile(s, 0.25),
    q3: quantile(s, 0.75),
    n: s.length,
  };
}

/** p50/p99 of one repetition's latencies. */
export function latencyQuantiles(xs: readonly number[]): { p50: number; p99: number } {
  const s = sorted(xs);
  return { p50: quantile(s, 0.5), p99: quantile(s, 0.99) };
}
