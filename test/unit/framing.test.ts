import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeFrame, FrameDecoder, FramingError, MAX_MESSAGE_VALUES, parseBody } from 'hvplug/transport';

afterEach(() => {
  vi.restoreAllMocks();
});

function decodeAll(d: FrameDecoder, parts: readonly Buffer[]): string[] {
  return parts.flatMap((p) => d.push(p).map((b) => b.toString('utf8')));
}

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('FrameDecoder', () => {
  const bodies = [JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'é' }), '', JSON.stringify({ jsonrpc: '2.0', id: 2, result: {} })];
  const stream = Buffer.concat([
    encodeFrame(bodies[0]!),
    Buffer.from('content-length: 0\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n'),
    encodeFrame(bodies[2]!),
  ]);

  it('decodes the same bodies whatever two boundaries split the stream', () => {
    for (let i = 0; i <= stream.length; i++) {
      for (let j = i; j <= stream.length; j++) {
        const parts = [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)];
        expect(decodeAll(new FrameDecoder(), parts), `split at ${i}, ${j}`).toEqual(bodies);
      }
    }
  });

  it('hands each() the same bodies as push() whatever two boundaries split the stream, a header over the cap refused alike', () => {
    const eachAll = (d: FrameDecoder, parts: readonly Buffer[]): string[] => {
      const out: string[] = [];
      for (const p of parts) d.each(p, (buf, start, end) => out.push(buf.toString('utf8', start, end)) > 0);
      return out;
    };
    for (let i = 0; i <= stream.length; i++) {
      for (let j = i; j <= stream.length; j++) {
        const parts = [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)];
        expect(eachAll(new FrameDecoder(), parts), `split at ${i}, ${j}`).toEqual(bodies);
      }
    }
    const over = Buffer.concat([encodeFrame('1'), Buffer.from('Content-Length: 99\r\n\r\n')]);
    const seen: string[] = [];
    const err = thrown(() => new FrameDecoder(10).each(over, (buf, start, end) => seen.push(buf.toString('utf8', start, end)) > 0));
    expect(seen).toEqual(['1']);
    expect((err as FramingError).message).toBe((thrown(() => new FrameDecoder(10).push(over.subarray(encodeFrame('1').length))) as FramingError).message);
  });

  it('stops handing bodies to each() once its callback says so', () => {
    const seen: string[] = [];
    new FrameDecoder().each(stream, (buf, start, end) => {
      seen.push(buf.toString('utf8', start, end));
      return false;
    });
    expect(seen).toEqual([bodies[0]]);
  });

  it('decodes the stream fed one byte at a time', () => {
    const parts = Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1));
    expect(decodeAll(new FrameDecoder(), parts)).toEqual(bodies);
  });

  it('copies each byte of a large body at most once, fed in 64 KiB chunks', () => {
    const body = Buffer.alloc(15 * 1024 * 1024, 'x');
    const frame = Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`), body]);
    let copied = 0;
    const concat = Buffer.concat.bind(Buffer);
    vi.spyOn(Buffer, 'concat').mockImplementation((list, total) => {
      const out = concat(list, total);
      copied += out.length;
      return out;
    });
    const d = new FrameDecoder();
    const out: Buffer[] = [];
    for (let i = 0; i < frame.length; i += 64 * 1024) out.push(...d.push(frame.subarray(i, i + 64 * 1024)));
    vi.restoreAllMocks();
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(body)).toBe(true);
    expect(copied).toBeLessThanOrEqual(body.length + 64 * 1024);
  });

  it('refuses an over-size message from its header, split or whole, before its body arrives', () => {
    const header = Buffer.from('Content-Length: 1001\r\n\r\n');
    for (let i = 0; i <= header.length; i++) {
      const d = new FrameDecoder(1000);
      const err = thrown(() => decodeAll(d, [header.subarray(0, i), header.subarray(i)]));
      expect(err, `split at ${i}`).toBeInstanceOf(FramingError);
      expect((err as Error).message).toBe('message of 1001 bytes exceeds the limit of 1000 bytes');
    }
  });

  it('refuses a header longer than 1024 bytes without its end', () => {
    const d = new FrameDecoder();
    expect(d.push(Buffer.from(`Content-Length: 2\r\nX-Pad: ${'p'.repeat(900)}`))).toEqual([]);
    expect(() => d.push(Buffer.from('p'.repeat(200)))).toThrow(/header longer than 1024 bytes/);
  });

  it('refuses two Content-Length headers in one frame, naming the duplicate', () => {
    for (const header of ['Content-Length: 2\r\nContent-Length: 3', 'Content-Length: 2\r\ncontent-length: 2', 'content-length: 2\r\nX-Other: 1\r\nCONTENT-LENGTH: 2']) {
      const err = thrown(() => new FrameDecoder().push(Buffer.from(`${header}\r\n\r\n{}`)));
      expect(err, header).toBeInstanceOf(FramingError);
      expect((err as Error).message, header).toMatch(/duplicate Content-Length header/);
    }
  });

  it('reads headers close to the plain form as the general parser does, each right after a frame in the same chunk', () => {
    const after = (header: string, body: string): string[] => new FrameDecoder().push(Buffer.concat([encodeFrame('{}'), Buffer.from(`${header}${body}`)])).map((b) => b.toString());
    expect(after('Content-Length: 2 \r\n\r\n', '[]')).toEqual(['{}', '[]']);
    expect(after('Content-Length: 002\r\n\r\n', '[]')).toEqual(['{}', '[]']);
    expect(after('content-length: 2\r\n\r\n', '[]')).toEqual(['{}', '[]']);
    expect(after('Content-Length: 2\r\nX: y\r\n\r\n', '[]')).toEqual(['{}', '[]']);
    // Twelve digits are a length (over the cap here); thirteen are no length at all.
    expect(() => after(`Content-Length: ${'9'.repeat(12)}\r\n\r\n`, '')).toThrow(/exceeds the limit/);
    expect(() => after(`Content-Length: ${'1'.repeat(13)}\r\n\r\n`, '')).toThrow(/bad Content-Length/);
    expect(() => after('Content-Length: \r\n\r\n', '')).toThrow(/bad Content-Length/);
    // A plain header whose end has not arrived yet waits for it.
    const d = new FrameDecoder();
    expect(d.push(Buffer.from('Content-Length: 2\r\n\r'))).toEqual([]);
    expect(d.push(Buffer.from('\n[]')).map((b) => b.toString())).toEqual(['[]']);
  });

  it('still accepts header lines other than Content-Length and Content-Type', () => {
    const d = new FrameDecoder();
    expect(decodeAll(d, [Buffer.from('Content-Length: 2\r\nX-Trace: abc\r\n\r\n{}')])).toEqual(['{}']);
  });
});

describe('FrameDecoder.pushOne', () => {
  it('returns the first body and the bytes after it untouched, across chunks, even when they are not a frame', () => {
    const d = new FrameDecoder();
    const frame = encodeFrame('{"id":1}');
    const raw = Buffer.from('\x1b[1m$ not a header\r\n');
    const all = Buffer.concat([frame, raw]);
    expect(d.pushOne(all.subarray(0, 5))).toBeUndefined();
    expect(d.pushOne(all.subarray(5, frame.length - 2))).toBeUndefined();
    const got = d.pushOne(all.subarray(frame.length - 2));
    expect(got?.body.toString()).toBe('{"id":1}');
    expect(got?.rest.equals(raw)).toBe(true);
  });

  it('still refuses a stream that does not start with a frame', () => {
    expect(() => new FrameDecoder().pushOne(Buffer.from('hello\r\n\r\n'))).toThrow(FramingError);
  });
});

describe('parseBody', () => {
  const body = (text: string): [Buffer, number, number] => {
    const buf = Buffer.from(`xx${text}yy`);
    return [buf, 2, buf.length - 2];
  };
  const items = (n: number): string => JSON.stringify(new Array<number>(n).fill(0));

  it(`takes up to MAX_MESSAGE_VALUES leaf values (${MAX_MESSAGE_VALUES}), and refuses one more, quoting the start`, () => {
    expect(parseBody(...body(items(MAX_MESSAGE_VALUES)))).toHaveLength(MAX_MESSAGE_VALUES);
    expect(() => parseBody(...body(items(MAX_MESSAGE_VALUES + 1)))).toThrow(/holds over 10,000 values \(scalars, empty arrays and objects\): "\[0,0,0/);
    // Leaves at every depth, empty objects and arrays among them: MAX_MESSAGE_VALUES - 1 zeros, an empty object, a 1.
    const nested = JSON.stringify({ a: { b: new Array<number>(MAX_MESSAGE_VALUES - 1).fill(0), c: [{}], d: 1 } });
    expect(() => parseBody(...body(nested))).toThrow(FramingError);
  });

  it('counts a chain of nested arrays as the one leaf it ends in: depth costs a schema one issue, not one per level', () => {
    const deep = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
    expect(parseBody(...body(deep))).toHaveLength(1);
  });
});
