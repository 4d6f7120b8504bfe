import { describe, expect, it } from 'vitest';
import { builtinCodeCache, withoutBuiltinCodeCache } from '../../scripts/snapshot-blob.mjs';

const size = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const str = (s: string): Buffer => Buffer.concat([size(s.length), Buffer.from(s, 'latin1')]);
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/** A blob laid out as node 20 writes one (scripts/snapshot-blob.mjs), with made-up contents. */
function blob(cache: [string, Buffer][], magic = 0x0143da19): { bytes: Buffer; cacheAt: number } {
  const v8 = Buffer.from('V8 startup data, opaque here');
  const head = Buffer.concat([
    u32(magic),
    Buffer.from([1]),
    str('20.20.2'),
    str('x64'),
    str('linux'),
    u32(0x839dbe75),
    u32(0),
    u32(v8.length),
    v8,
    // The isolate and environment infos: indices, names, counts.
    size(3),
    size(1),
    size(2),
    size(7),
    str('process'),
    size(0),
  ]);
  const list = Buffer.concat([size(cache.length), ...cache.flatMap(([id, data]) => [str(id), size(data.length), data])]);
  return { bytes: Buffer.concat([head, list]), cacheAt: head.length };
}

describe('node snapshot blob', () => {
  const cache: [string, Buffer][] = [
    ['fs', Buffer.alloc(300, 7)],
    ['internal/readline/emitKeypressEvents', Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 9])],
  ];

  it("finds node's code cache of its modules after V8's data and cuts it to an empty list", () => {
    const { bytes, cacheAt } = blob(cache);
    expect(builtinCodeCache(bytes)).toEqual({ at: cacheAt, ids: ['fs', 'internal/readline/emitKeypressEvents'] });
    const slim = withoutBuiltinCodeCache(bytes);
    expect(slim).toEqual(Buffer.concat([bytes.subarray(0, cacheAt), size(0)]));
    expect(builtinCodeCache(slim!)).toEqual({ at: cacheAt, ids: [] });
  });

  it('leaves alone what it does not recognize: another magic, a cut-off file, a list that does not end the file', () => {
    const { bytes } = blob(cache);
    expect(withoutBuiltinCodeCache(blob(cache, 0x12345678).bytes)).toBeUndefined();
    expect(withoutBuiltinCodeCache(bytes.subarray(0, bytes.length - 1))).toBeUndefined();
    expect(withoutBuiltinCodeCache(Buffer.concat([bytes, Buffer.from([0])]))).toBeUndefined();
    expect(withoutBuiltinCodeCache(bytes.subarray(0, 20))).toBeUndefined();
  });

  it('leaves alone a blob in which the list could start at two places', () => {
    // An empty list whose count is also where a one-module list of the same bytes would start.
    const tail = Buffer.concat([size(1), str('a'), size(8), size(0)]);
    const { bytes } = blob([]);
    const ambiguous = Buffer.concat([bytes.subarray(0, bytes.length - 8), tail]);
    expect(builtinCodeCache(ambiguous)).toBeUndefined();
  });
});
