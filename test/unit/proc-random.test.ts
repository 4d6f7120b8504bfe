import { describe, expect, it } from 'vitest';
import { Id } from 'hvplug/protocol';
import { monotonicMs, randomBytesSync, randomUuid } from '../../src/proc/index.js';

describe('random ids and the clock without node:crypto or perf_hooks (src/proc)', () => {
  it('randomUuid gives version 4 UUIDs, as crypto.randomUUID does, that the protocol takes as ids; no two alike', () => {
    const ids = Array.from({ length: 2_000 }, () => randomUuid());
    for (const id of ids) {
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(Id.safeParse(id).success).toBe(true);
    }
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('randomBytesSync gives the length asked, and bytes that are not all alike', () => {
    expect(randomBytesSync(0)).toHaveLength(0);
    const big = randomBytesSync(4096);
    expect(big).toHaveLength(4096);
    expect(new Set(big).size).toBeGreaterThan(200);
  });

  it('monotonicMs counts milliseconds and never goes back', () => {
    const a = monotonicMs();
    const start = Date.now();
    while (Date.now() - start < 20);
    const b = monotonicMs();
    expect(b).toBeGreaterThanOrEqual(a + 15);
    expect(b - a).toBeLessThan(5_000);
  });
});
