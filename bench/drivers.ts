import type { Call } from './clients.js';

/** Collects garbage between measured segments (the bench runs with --expose-gc), so one segment's garbage is not the next one's pause. */
export function collect(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

export function hasGc(): boolean {
  return typeof (globalThis as { gc?: unknown }).gc === 'function';
}

/** n calls one after the other; each call's round trip in µs. */
export async function sequential(call: Call, n: number): Promise<number[]> {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await call();
    out[i] = (performance.now() - t0) * 1000;
  }
  return out;
}

/** total calls with up to `window` in flight (a new one leaves as each answer arrives); calls per second. */
export async function pipelined(call: Call, total: number, window: number): Promise<number> {
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    let issued = 0;
    let done = 0;
    const next = (): void => {
      if (issued >= total) return;
      issued++;
      call().then(() => {
        if (++done === total) resolve();
        else next();
      }, reject);
    };
    for (let i = 0; i < Math.min(window, total); i++) next();
  });
  return total / ((performance.now() - t0) / 1000);
}

/**
 * Runs each variant once per repetition, in an order that rotates every repetition so that no variant always
 * follows the same one, and collects what each run returned.
 */
export async function alternate<K extends string, T>(
  reps: number,
  variants: Record<K, () => Promise<T>>,
): Promise<Record<K, T[]>> {
  const keys = Object.keys(variants) as K[];
  const out = Object.fromEntries(keys.map((k) => [k, [] as T[]])) as Record<K, T[]>;
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < keys.length; i++) {
      const k = keys[(i + r) % keys.length] as K;
      collect();
      out[k].push(await variants[k]());
    }
  }
  return out;
}
