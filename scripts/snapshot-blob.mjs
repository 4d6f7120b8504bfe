// The file `node --build-snapshot` writes (node's src/node_snapshotable.cc, SnapshotData::ToBlob), as far as
// scripts/bundle.mjs needs it: where the code cache of node's own modules is, so that it can be left out.
//
//   u32 magic | metadata: u8 type, node version, arch, platform (each a size_t length and its bytes), u32 V8 cache
//   tag, u32 flags | int V8 startup data size, its bytes | isolate data info | environment info |
//   code cache: size_t count, then for each module its id (size_t length, bytes) and its cache (size_t length, bytes)
//
// The two infos between V8's data and the code cache change with node's version, so the code cache is found as the
// one place after V8's data from which such a list ends exactly at the end of the file. A layout not recognized is
// reported as such (undefined), never guessed at.

const MAGIC = 0x0143da19;
/** More modules than node has: a count above it is not one. */
const MAX_MODULES = 10_000;
/** node's module ids: `fs`, `internal/bootstrap/realm`, `internal/readline/emitKeypressEvents`, ... */
const MODULE_ID = /^\w[\w./-]*$/;

/**
 * Where the code cache of node's modules starts in `blob` and the ids of the modules it holds; undefined for what is
 * not a snapshot blob of this layout (a 64-bit node's), or holds more than one place such a list could start.
 */
export function builtinCodeCache(blob) {
  const v8End = startupDataEnd(blob);
  if (v8End === undefined) return undefined;
  let found;
  for (let at = v8End; at + 8 <= blob.length; at++) {
    // Most places fail on their count: checked before anything is parsed from them (5 MB in a fraction of a second).
    if (blob.readUInt32LE(at + 4) !== 0 || blob.readUInt32LE(at) > MAX_MODULES) continue;
    const ids = codeCacheAt(blob, at);
    if (ids === undefined) continue;
    if (found !== undefined) return undefined;
    found = { at, ids };
  }
  return found;
}

/** `blob` with an empty code cache of node's modules, or undefined when its layout is not recognized. */
export function withoutBuiltinCodeCache(blob) {
  const cache = builtinCodeCache(blob);
  if (cache === undefined) return undefined;
  return Buffer.concat([blob.subarray(0, cache.at), Buffer.alloc(8)]);
}

/** The offset just past V8's startup data, checking the metadata before it; undefined if it does not parse. */
function startupDataEnd(blob) {
  const r = reader(blob, 0);
  if (r.u32() !== MAGIC) return undefined;
  r.bytes(1);
  for (let i = 0; i < 3; i++) if (r.bytes(r.size()) === undefined) return undefined;
  r.u32();
  r.u32();
  const v8Size = r.i32();
  if (!(v8Size > 0) || r.bytes(v8Size) === undefined) return undefined;
  return r.at();
}

/** The module ids of a code cache list starting at `at` and ending exactly at the end of `blob`, else undefined. */
function codeCacheAt(blob, at) {
  const r = reader(blob, at);
  const count = r.size();
  if (count === undefined || count > MAX_MODULES) return undefined;
  const ids = [];
  for (let i = 0; i < count; i++) {
    const idLength = r.size();
    if (idLength === undefined || idLength === 0 || idLength > 256) return undefined;
    const id = r.bytes(idLength)?.toString('latin1');
    if (id === undefined || !MODULE_ID.test(id)) return undefined;
    ids.push(id);
    if (r.bytes(r.size() ?? Infinity) === undefined) return undefined;
  }
  return r.at() === blob.length ? ids : undefined;
}

/** Little-endian reads that return undefined past the end rather than throw. */
function reader(buf, start) {
  let p = start;
  const take = (n) => {
    if (!(n >= 0) || p + n > buf.length) {
      p = Infinity;
      return undefined;
    }
    const at = p;
    p += n;
    return at;
  };
  return {
    at: () => p,
    u32: () => (take(4) === undefined ? undefined : buf.readUInt32LE(p - 4)),
    i32: () => (take(4) === undefined ? undefined : buf.readInt32LE(p - 4)),
    size: () => {
      if (take(8) === undefined) return undefined;
      const n = buf.readBigUInt64LE(p - 8);
      return n > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(n);
    },
    bytes: (n) => (n === undefined || take(n) === undefined ? undefined : buf.subarray(p - n, p)),
  };
}
