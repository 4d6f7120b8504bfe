import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AnswerBatcher } from '../../src/plugin-sdk/answer-batch.js';

describe('plugin SDK answer batches', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setImmediate', 'clearImmediate', 'setTimeout', 'clearTimeout'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("writes an event raised during a lone call with the call's answer, and leaves nothing armed after it", () => {
    const writes: string[] = [];
    const batcher = new AnswerBatcher((frames) => writes.push(frames));
    batcher.beginRead();
    const burst = batcher.started();
    batcher.endRead();
    // The call's event (vm/pause's `paused`), then its answer, as the qemu plugin sends them.
    batcher.notified('event;');
    expect(writes).toEqual([]);
    batcher.answered('answer;', burst);
    expect(writes).toEqual(['event;answer;']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('still closes a burst whose calls are not all answered once the ready work has run', () => {
    const writes: string[] = [];
    const batcher = new AnswerBatcher((frames) => writes.push(frames));
    batcher.beginRead();
    const burst = batcher.started();
    batcher.started();
    batcher.endRead();
    batcher.answered('first;', burst);
    expect(writes).toEqual([]);
    vi.runOnlyPendingTimers();
    expect(writes).toEqual(['first;']);
  });
});
