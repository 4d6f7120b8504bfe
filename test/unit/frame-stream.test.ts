import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Message } from 'vscode-jsonrpc/node';
import { encodeFrame, FramedReader, FramedWriter, FrameReader, FrameWriter, FramingError, StreamClosedError } from 'hvplug/transport';

interface Read {
  messages: unknown[];
  errors: Error[];
  closed: Promise<void>;
}

/** Reads `readable` with a FrameReader until it ends; `onMessage` runs after each message is recorded. */
function read(readable: PassThrough, maxMessageBytes?: number, onMessage?: (reader: FrameReader) => void): Read {
  const reader = new FrameReader(readable, maxMessageBytes);
  const messages: unknown[] = [];
  const errors: Error[] = [];
  const closed = new Promise<void>((resolve) =>
    reader.listen({
      message: (msg) => {
        messages.push(msg);
        onMessage?.(reader);
      },
      error: (err) => errors.push(err),
      close: resolve,
    }),
  );
  return { messages, errors, closed };
}

/** The stream's 'close' (events.once would reject on the 'error' before it). */
const closed = (s: PassThrough): Promise<void> => new Promise((resolve) => s.once('close', resolve));

const msgs = [{ jsonrpc: '2.0', id: 1, method: 'vm/info', params: { vmId: 'é' } }, { jsonrpc: '2.0', id: 1, result: null }, 7, 'text'];
const stream = Buffer.concat(msgs.map((m) => encodeFrame(JSON.stringify(m))));

describe('FrameReader', () => {
  it('reads the same messages whatever one boundary splits the stream, and reports its end as close', async () => {
    for (let i = 0; i <= stream.length; i++) {
      const input = new PassThrough();
      const r = read(input);
      input.write(stream.subarray(0, i));
      input.end(stream.subarray(i));
      await r.closed;
      expect(r.messages, `split at ${i}`).toEqual(msgs);
      expect(r.errors).toEqual([]);
    }
  });

  it('reads the stream fed one byte at a time', async () => {
    const input = new PassThrough();
    const r = read(input);
    for (const byte of stream) input.write(Buffer.of(byte));
    input.end();
    await r.closed;
    expect(r.messages).toEqual(msgs);
  });

  it('reports a frame over the cap as a FramingError and reads nothing after it, though the stream goes on', async () => {
    const input = new PassThrough();
    const r = read(input, 64);
    input.write(encodeFrame(JSON.stringify({ a: 1 })));
    input.write(encodeFrame(JSON.stringify({ big: 'x'.repeat(100) })));
    input.write(encodeFrame(JSON.stringify({ a: 2 })));
    input.end(encodeFrame(JSON.stringify({ a: 3 })));
    await r.closed;
    expect(r.messages).toEqual([{ a: 1 }]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toBeInstanceOf(FramingError);
    expect(r.errors[0]?.message).toMatch(/exceeds the limit of 64 bytes/);
  });

  it('reports a body that is not JSON as a FramingError and stops there, even within the same chunk', async () => {
    const input = new PassThrough();
    const r = read(input);
    input.end(Buffer.concat([encodeFrame('{"a":1}'), encodeFrame('{not json'), encodeFrame('{"a":2}')]));
    await r.closed;
    expect(r.messages).toEqual([{ a: 1 }]);
    expect(r.errors.map((e) => e instanceof FramingError && e.message)).toEqual([expect.stringMatching(/not JSON/)]);
  });

  it('reports bytes that are not a header with what they were (a print on stdout)', async () => {
    const input = new PassThrough();
    const r = read(input);
    input.end('hello\n');
    await r.closed;
    expect(r.errors).toHaveLength(1);
    expect((r.errors[0] as FramingError).stray).toBe(JSON.stringify('hello\n'));
  });

  it('runs no handler once released, not even for the rest of the chunk it was released in', async () => {
    const input = new PassThrough();
    const seen: unknown[] = [];
    const reader = new FrameReader(input);
    let closed = false;
    reader.listen({
      message: (msg) => {
        seen.push(msg);
        reader.release();
      },
      error: () => undefined,
      close: () => (closed = true),
    });
    const ended = once(input, 'end');
    input.end(Buffer.concat([encodeFrame('1'), encodeFrame('2')]));
    input.resume();
    await ended;
    expect(seen).toEqual([1]);
    expect(closed).toBe(false);
  });

  it("reports the stream's own error to the error handler", async () => {
    const input = new PassThrough();
    const r = read(input);
    const failed = closed(input);
    input.destroy(new Error('reset'));
    await failed;
    expect(r.errors.map((e) => e.message)).toEqual(['reset']);
  });

  it('listens once', () => {
    const reader = new FrameReader(new PassThrough());
    const handlers = { message: () => undefined, error: () => undefined, close: () => undefined };
    reader.listen(handlers);
    expect(() => reader.listen(handlers)).toThrow(/already listening/);
  });
});

describe('FrameWriter', () => {
  function sink(): { out: PassThrough; text: () => string } {
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    return { out, text: () => Buffer.concat(chunks).toString('utf8') };
  }

  it('writes each message as one frame, handing writeFrame the message it holds', () => {
    const seen: object[] = [];
    const { out, text } = sink();
    const w = new FrameWriter(out, undefined, (frame, msg) => {
      seen.push(msg);
      out.write(frame);
    });
    w.write({ id: 1, method: 'é' });
    expect(text()).toBe(`Content-Length: 22\r\n\r\n{"id":1,"method":"é"}`);
    expect(seen).toEqual([{ id: 1, method: 'é' }]);
  });

  it('refuses a message over the cap with a FramingError and writes nothing', () => {
    const { out, text } = sink();
    const w = new FrameWriter(out, 32);
    expect(() => w.write({ big: 'x'.repeat(32) })).toThrow(FramingError);
    expect(text()).toBe('');
  });

  it('refuses a write after end or destroy with a StreamClosedError and writes nothing', async () => {
    const { out, text } = sink();
    const w = new FrameWriter(out);
    w.end();
    expect(() => w.write({ id: 1 })).toThrow(StreamClosedError);
    await once(out, 'finish');
    const { out: other } = sink();
    other.destroy();
    expect(() => new FrameWriter(other).write({ id: 1 })).toThrow(StreamClosedError);
    expect(text()).toBe('');
  });

  it("reports EPIPE from a process that has exited to the error handler, and throws nothing from the stream's error", async () => {
    // The child closes its stdin and says so, then lives on: the pipe has no reader, the stream is still open.
    const child = spawn(process.execPath, ['-e', "require('fs').closeSync(0); console.log('closed'); setTimeout(() => {}, 10_000)"], {
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    try {
      await once(child.stdout, 'data');
      const errors: Error[] = [];
      const writerClosed = new Promise<void>((resolve) => {
        const w = new FrameWriter(child.stdin, undefined, undefined, { error: (err) => errors.push(err), close: resolve });
        expect(() => w.write({ id: 1 })).not.toThrow();
      });
      await writerClosed;
      expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['EPIPE']);
    } finally {
      child.kill();
    }
  });

  it('listens to the stream\'s errors with no handlers given: an error is not thrown from the event loop', async () => {
    const out = new PassThrough();
    new FrameWriter(out);
    const gone = closed(out);
    out.destroy(new Error('EPIPE'));
    await gone;
  });
});

describe('FramedReader and FramedWriter (vscode-jsonrpc shapes, for its MessageConnection)', () => {
  it('fires onError for a frame over the cap and onClose at the end', async () => {
    const input = new PassThrough();
    const reader = new FramedReader(input, 64);
    const messages: Message[] = [];
    const errors: Error[] = [];
    reader.onError((e) => errors.push(e));
    const closed = new Promise<void>((resolve) => reader.onClose(() => resolve()));
    reader.listen((m) => messages.push(m));
    input.write(encodeFrame('{"jsonrpc":"2.0","method":"a"}'));
    input.end(encodeFrame(JSON.stringify({ big: 'x'.repeat(100) })));
    await closed;
    expect(messages).toEqual([{ jsonrpc: '2.0', method: 'a' }]);
    expect(errors[0]).toBeInstanceOf(FramingError);
  });

  it('rejects a write after the stream ended, and fires onError (not a throw) for an error of the stream', async () => {
    const out = new PassThrough();
    const writer = new FramedWriter(out);
    const errors: unknown[] = [];
    writer.onError(([e]) => errors.push(e.message));
    out.end();
    await expect(writer.write({ jsonrpc: '2.0' })).rejects.toBeInstanceOf(StreamClosedError);
    const gone = closed(out);
    out.destroy(new Error('EPIPE'));
    await gone;
    expect(errors).toEqual(['EPIPE']);
  });
});
