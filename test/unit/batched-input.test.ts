import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BatchedInput, MAX_UNREAD_INPUT_BYTES } from '../../src/core/batched-input.js';

/** A stream that keeps each write it is given, as one string per write. */
function recorder(): { stream: Writable; writes: string[] } {
  const writes: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      writes.push(chunk.toString());
      done();
    },
  });
  return { stream, writes };
}

const tick = (): Promise<void> => new Promise((r) => process.nextTick(r));

describe('BatchedInput: the plugin stdin writer', () => {
  it('joins the frames of one tick into one write, at the end of the tick', async () => {
    const { stream, writes } = recorder();
    const input = new BatchedInput(stream, () => undefined, () => false);
    input.write('a');
    input.write('b');
    input.write('c');
    expect(writes).toEqual([]);
    await tick();
    expect(writes).toEqual(['abc']);
  });

  it('writes a frame nothing can join at once, in its own write', () => {
    const { stream, writes } = recorder();
    const input = new BatchedInput(stream, () => undefined, () => true);
    input.write('a');
    expect(writes).toEqual(['a']);
  });

  it('keeps the order: a lone frame after held ones joins them instead of overtaking them', async () => {
    const { stream, writes } = recorder();
    let alone = false;
    const input = new BatchedInput(stream, () => undefined, () => alone);
    input.write('a');
    alone = true;
    input.write('b');
    expect(writes).toEqual([]);
    await tick();
    expect(writes).toEqual(['ab']);
    input.write('c');
    expect(writes).toEqual(['ab', 'c']);
  });

  it('joins by default (no one says a frame is alone)', async () => {
    const { stream, writes } = recorder();
    const input = new BatchedInput(stream, () => undefined);
    input.write('a');
    expect(writes).toEqual([]);
    await tick();
    expect(writes).toEqual(['a']);
  });

  it('writes nothing to a destroyed stream, lone or held', async () => {
    const { stream, writes } = recorder();
    let alone = true;
    const input = new BatchedInput(stream, () => undefined, () => alone);
    stream.destroy();
    input.write('a');
    alone = false;
    input.write('b');
    await tick();
    expect(writes).toEqual([]);
  });

  it('reports an overflow when more than the cap waits unread, after a lone frame as after a batch', async () => {
    let overflows = 0;
    const { stream } = recorder();
    let unread = 0;
    // What the pipe holds unread, as the stream would count it.
    Object.defineProperty(stream, 'writableLength', { get: () => unread });
    let alone = true;
    const input = new BatchedInput(stream, () => overflows++, () => alone);
    input.write('a');
    expect(overflows).toBe(0);
    unread = MAX_UNREAD_INPUT_BYTES + 1;
    input.write('b');
    expect(overflows).toBe(1);
    alone = false;
    input.write('c');
    await tick();
    expect(overflows).toBe(2);
  });

  it('end() writes what is held, then ends the stream', async () => {
    const { stream, writes } = recorder();
    const input = new BatchedInput(stream, () => undefined, () => false);
    input.write('exit');
    input.end();
    await new Promise((r) => stream.once('finish', r));
    expect(writes).toEqual(['exit']);
  });
});
