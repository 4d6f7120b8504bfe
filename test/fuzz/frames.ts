// Generators of what a peer can put on a Content-Length framed JSON-RPC stream, each piece labelled with what
// the receiver must make of it. The labels are the oracle of the fuzz properties, so they are decided here from
// the bytes themselves (JSON.parse, the header we wrote), never by asking the framing code under test.
import fc from 'fast-check';
import { METHOD_NAMES, VM_STATUSES } from 'hvplug/protocol';

/**
 * The message cap both in-process harnesses run with (the host's maxMessageBytes, the SDK's
 * HVPLUG_MAX_MESSAGE_BYTES): small enough that a frame really over it costs little, big enough for a body of
 * 100,000 nested arrays.
 */
export const FUZZ_MAX_MESSAGE_BYTES = 256 * 1024;

/** The VM the host harness has adopted; events and results name it so that they reach the shim's tracking. */
export const FUZZ_VM_ID = 'fuzz-vm';

/**
 * ok: a well-framed JSON body; the stream goes on.
 * violation: the framing is broken, the receiver must drop the stream (no read past it, no crash).
 * lenient: a header a reader may accept or refuse; a body that is a violation stays one either way.
 * unknown: anything but a crash or a hang is acceptable (random bytes, a truncated frame).
 */
export type Expect = 'ok' | 'violation' | 'unknown';
type HeaderExpect = Expect | 'lenient';

export interface Piece {
  bytes: Buffer;
  expect: Expect;
  /** An `exit` notification: a plugin ends its session on it. */
  exit: boolean;
  /** Well-framed JSON, but not a JSON-RPC message by the host's rules (jsonRpcShape): the host drops the plugin. */
  notRpc: boolean;
  /** For the counterexample report. */
  label: string;
}

export interface FuzzInput {
  pieces: Piece[];
  /** Sizes of the chunks the bytes are written in (cycled); empty: one write. */
  chunks: number[];
}

/**
 * What the stream as a whole must lead to: the first piece that is not plainly ok decides. An `exit`
 * notification ends a plugin's reading (`exitEnds`); the host reads on past one. The host also ends a stream on
 * a well-framed body that is not a JSON-RPC message (`notRpcBreaks`); the SDK drops such a body and reads on.
 */
export function verdict(pieces: readonly Piece[], exitEnds = false, notRpcBreaks = false): Expect | 'exit' {
  for (const p of pieces) {
    if (p.expect !== 'ok') return p.expect;
    if (p.notRpc && notRpcBreaks) return 'violation';
    if (p.exit && exitEnds) return 'exit';
  }
  return 'ok';
}

/**
 * Is a parsed body a JSON-RPC message as the host reads one: a plain object whose id, if present, is a number,
 * a string or null, whose method, if present, is a string, and which has at least one of the two. Stated here
 * from the protocol, not taken from the host's code, so that the oracle can disagree with it.
 */
export function jsonRpcShape(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const m = value as Record<string, unknown>;
  const hasId = Object.hasOwn(m, 'id');
  const hasMethod = Object.hasOwn(m, 'method');
  if (hasId && !(m.id === null || typeof m.id === 'number' || typeof m.id === 'string')) return false;
  if (hasMethod && typeof m.method !== 'string') return false;
  return hasId || hasMethod;
}

export function joined(input: FuzzInput): Buffer {
  return Buffer.concat(input.pieces.map((p) => p.bytes));
}

/** The bytes cut into the input's chunk sizes, as a pipe may deliver them. */
export function chunked(input: FuzzInput): Buffer[] {
  const all = joined(input);
  if (input.chunks.length === 0) return [all];
  // A big stream comes in pipe-sized reads, not in bytes: scaled, its chunks stay few.
  const scale = all.length > 16 * 1024 ? 1024 : 1;
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < all.length; i++) {
    const n = (input.chunks[i % input.chunks.length] as number) * scale;
    out.push(all.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** A short, printable account of a counterexample. */
export function describeInput(input: FuzzInput): string {
  const lines = input.pieces.map((p) => {
    const text = p.bytes.length > 300 ? `${p.bytes.subarray(0, 300).toString('latin1')}… (${p.bytes.length} bytes)` : p.bytes.toString('latin1');
    return `  [${p.label}, ${p.expect}${p.exit ? ', exit' : ''}${p.notRpc ? ', not-rpc' : ''}] ${JSON.stringify(text)}`;
  });
  return `${lines.join('\n')}\n  chunks: ${JSON.stringify(input.chunks)}`;
}

// ---- bodies ----

/** Stands for a deep nesting in a generated value; render() splices the nesting in where it appears. */
const DEEP_MARK = '\u0000deep\u0000';
const DEEP = JSON.stringify(DEEP_MARK);

/** n nested arrays, as text: JSON.stringify itself cannot write them. */
export const deepArrays = (n: number): string => '['.repeat(n) + ']'.repeat(n);

/** A JSON value with, where the generator put one, a deep nesting spliced in as text. */
interface Body {
  text: string;
  expect: Expect;
  exit: boolean;
  notRpc: boolean;
  label: string;
}

const smallJson = fc.jsonValue({ maxDepth: 3 });

/**
 * Past the depth at which JSON.stringify runs out of stack (about 7,000 here), and below it. A deep body costs
 * its reader time: JSON.parse takes ~0.1 s for 100,000 levels, and a body that is not a JSON-RPC message is
 * logged by vscode-jsonrpc JSON.stringify'd with an indent of 4, which is quadratic in the depth (~0.2 s at
 * 3,000 levels, ~0.4 s to overflow at 100,000). They are kept rare enough for 100,000 cases to run in minutes.
 */
const deepNesting = fc.oneof({ weight: 1, arbitrary: fc.constant(100_000) }, { weight: 6, arbitrary: fc.integer({ min: 100, max: 3_000 }) });

/** A JSON value, now and then a deep nesting. */
const jsonOrDeep = (deepWeight = 1): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 150, arbitrary: smallJson }, { weight: deepWeight, arbitrary: fc.constant(DEEP_MARK) });

function render(value: unknown, depth: number): string {
  return JSON.stringify(value).replaceAll(DEEP, deepArrays(depth));
}

const ABSENT = Symbol('absent');

const mutatedId = (pendingIds: readonly number[]): fc.Arbitrary<unknown> =>
  fc.oneof(
    { weight: 6, arbitrary: pendingIds.length ? fc.constantFrom(...pendingIds) : fc.nat(5) },
    { weight: 2, arbitrary: fc.integer() },
    { weight: 1, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.constant(ABSENT) },
    { weight: 2, arbitrary: fc.string({ maxLength: 12 }) },
    { weight: 1, arbitrary: fc.constantFrom(2 ** 53, 2 ** 53 + 2, 1e308, -1, 1.5, -0, 0.1) },
    { weight: 1, arbitrary: fc.constantFrom(...pendingIds.map(String), '0', '1') },
    { weight: 1, arbitrary: fc.oneof(fc.object({ maxDepth: 1 }), fc.array(fc.integer(), { maxLength: 3 }), fc.boolean()) },
  );

const NOTIFICATIONS = ['vm/event', '$/progress', '$/cancelRequest', 'exit', 'initialized', '$/logTrace', '$/setTrace'];

const methodName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...METHOD_NAMES) },
  { weight: 4, arbitrary: fc.constantFrom(...NOTIFICATIONS) },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'x-fuzz/echo', 'x-none/thing', '') },
);

const EVENT_TYPES = ['created', 'running', 'paused', 'resumed', 'stopped', 'exited', 'crashed', 'device-added', 'device-removed', 'state', 'lost', 'recovered'];

const vmEventParams = fc.record(
  {
    vmId: fc.oneof({ weight: 4, arbitrary: fc.constant(FUZZ_VM_ID) }, fc.string({ maxLength: 10 })),
    seq: fc.oneof(fc.nat(), fc.integer(), fc.double()),
    time: fc.oneof(fc.constant('2025-01-01T00:00:00.000Z'), fc.string({ maxLength: 10 })),
    type: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...EVENT_TYPES) }, fc.string({ maxLength: 8 })),
    state: jsonOrDeep(3),
    reason: fc.string({ maxLength: 10 }),
    code: fc.oneof(fc.integer(), fc.constant(null)),
    signal: fc.oneof(fc.string({ maxLength: 6 }), fc.constant(null)),
    deviceId: fc.oneof(fc.constant('disk0'), fc.string({ maxLength: 8 })),
  },
  { requiredKeys: ['vmId', 'type'] },
);

const params = fc.oneof(
  { weight: 6, arbitrary: jsonOrDeep() },
  { weight: 3, arbitrary: vmEventParams },
  { weight: 2, arbitrary: fc.record({ token: fc.oneof(fc.string(), fc.integer()), value: fc.record({ message: fc.string(), percentage: fc.integer() }) }) },
  { weight: 2, arbitrary: fc.record({ id: mutatedId([]) }) },
  { weight: 2, arbitrary: fc.record({ vmId: fc.constant(FUZZ_VM_ID), config: smallJson, state: jsonOrDeep() }, { requiredKeys: ['vmId'] }) },
  { weight: 1, arbitrary: fc.constant(ABSENT) },
);

const result = fc.oneof(
  { weight: 5, arbitrary: jsonOrDeep() },
  { weight: 5, arbitrary: fc.record({ status: fc.constantFrom(...VM_STATUSES), state: jsonOrDeep(3) }, { requiredKeys: ['status'] }) },
  {
    weight: 2,
    arbitrary: fc.record({
      vmId: fc.constant(FUZZ_VM_ID),
      status: fc.constantFrom(...VM_STATUSES),
      vcpus: fc.integer(),
      memoryMiB: fc.integer(),
      devices: fc.constant([]),
    }),
  },
);

const errorCode = fc.oneof(
  fc.constantFrom(-32700, -32600, -32601, -32602, -32603, -31001, -31002, -31003, -31004, -31005, -31006, -31007, -31008, -31009, -31010, -32099, -32800),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 5 }),
);

const errorMember = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record(
      { code: errorCode, message: fc.oneof(fc.string(), fc.integer()), data: fc.oneof(jsonOrDeep(), fc.record({ vmId: fc.string(), issues: fc.constant([]), method: fc.string() })) },
      { requiredKeys: [] },
    ),
  },
  { weight: 1, arbitrary: fc.oneof(fc.constant(null), fc.constant(0), fc.constant(''), fc.constant(false), fc.string(), fc.integer(), fc.constant([])) },
);

function message(pendingIds: readonly number[]): fc.Arbitrary<Record<string, unknown>> {
  const jsonrpc = fc.oneof({ weight: 8, arbitrary: fc.constant('2.0') }, fc.constant(ABSENT), fc.constantFrom('1.0', 2, null));
  const request = fc.record({ jsonrpc, id: mutatedId(pendingIds), method: methodName, params });
  const notification = fc.record({ jsonrpc, method: methodName, params });
  const response = fc.oneof(
    { weight: 4, arbitrary: fc.record({ jsonrpc, id: mutatedId(pendingIds), result }) },
    { weight: 3, arbitrary: fc.record({ jsonrpc, id: mutatedId(pendingIds), error: errorMember }) },
    { weight: 1, arbitrary: fc.record({ jsonrpc, id: mutatedId(pendingIds), result, error: errorMember }) },
    { weight: 1, arbitrary: fc.record({ jsonrpc, id: mutatedId(pendingIds) }) },
    { weight: 1, arbitrary: fc.record({ jsonrpc, id: mutatedId(pendingIds), result: fc.constant(null) }) },
  );
  return fc
    .oneof({ weight: 3, arbitrary: request }, { weight: 3, arbitrary: notification }, { weight: 4, arbitrary: response })
    .map((m) => Object.fromEntries(Object.entries(m).filter(([, v]) => v !== ABSENT)));
}

function body(pendingIds: readonly number[]): fc.Arbitrary<Body> {
  const rpc = fc.tuple(message(pendingIds), deepNesting).map(([m, depth]): Body => {
    const exit = m.method === 'exit' && !('id' in m);
    return { text: render(m, depth), expect: 'ok', exit, notRpc: !jsonRpcShape(m), label: 'message' };
  });
  const notObject = fc
    .oneof(fc.jsonValue({ maxDepth: 2 }).filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)), fc.constant(null), fc.constant([]))
    .map((v): Body => ({ text: JSON.stringify(v), expect: 'ok', exit: false, notRpc: true, label: 'json-not-object' }));
  const deepBody = deepNesting.map((n): Body => ({ text: deepArrays(n), expect: 'ok', exit: false, notRpc: true, label: `deep-${n}` }));
  const notJson = fc.string({ maxLength: 40 }).map((s): Body => {
    let parses = true;
    let value: unknown;
    try {
      value = JSON.parse(s);
    } catch {
      parses = false;
    }
    return { text: s, expect: parses ? 'ok' : 'violation', exit: false, notRpc: parses && !jsonRpcShape(value), label: 'not-json' };
  });
  const truncatedJson = message(pendingIds).map((m): Body => {
    const t = JSON.stringify(m);
    return { text: t.slice(0, Math.max(0, t.length - 1)), expect: 'violation', exit: false, notRpc: false, label: 'json-cut' };
  });
  return fc.oneof(
    { weight: 140, arbitrary: rpc },
    { weight: 20, arbitrary: notObject },
    { weight: 1, arbitrary: deepBody },
    { weight: 20, arbitrary: notJson },
    { weight: 10, arbitrary: truncatedJson },
  );
}

// ---- headers ----

interface Header {
  text: string;
  expect: HeaderExpect;
  /** The length the header claims, when it differs from the body's. */
  claim?: 'shorter' | 'longer';
  /** How many bytes short the claimed length is. */
  shortBy?: number;
  label: string;
}

const headerFor = (length: number): fc.Arbitrary<Header> => {
  const std = (name: string, sep = ': ', value = String(length)): string => `${name}${sep}${value}`;
  const end = '\r\n\r\n';
  const contentType = 'Content-Type: application/vscode-jsonrpc; charset=utf-8';
  return fc.oneof(
    { weight: 20, arbitrary: fc.constant<Header>({ text: std('Content-Length') + end, expect: 'ok', label: 'canonical' }) },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom('content-length', 'CONTENT-LENGTH', 'Content-length', 'cOnTeNt-LeNgTh')
        .map((n): Header => ({ text: std(n) + end, expect: 'ok', label: 'name-case' })),
    },
    {
      weight: 2,
      arbitrary: fc.boolean().map(
        (before): Header => ({
          text: (before ? `${contentType}\r\n${std('Content-Length')}` : `${std('Content-Length')}\r\n${contentType}`) + end,
          expect: 'ok',
          label: before ? 'content-type-first' : 'content-type-after',
        }),
      ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.boolean(), fc.constantFrom('X-Trace: 1', 'Foo:bar', 'Content-Encoding: identity'))
        .map(([before, extra]): Header => ({ text: (before ? `${extra}\r\n${std('Content-Length')}` : `${std('Content-Length')}\r\n${extra}`) + end, expect: 'lenient', label: 'extra-header' })),
    },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom(std('Content-Length', ':'), std('Content-Length', ':   ', `${length}  `), std('Content-Length ', ': '), std('Content-Length', ':\t'), `Content-Length: 00${length}`)
        .map((t): Header => ({ text: t + end, expect: 'lenient', label: 'spacing' })),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom('\n\n', '\r\n\n', '\n\r\n', '\r\r', '\r\n').map((e): Header => ({ text: std('Content-Length') + e, expect: 'unknown', label: 'line-ends' })),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.integer({ min: 0, max: length + 1000 }).filter((n) => n !== length), fc.boolean())
        .map(([other, first]): Header => ({
          text: (first ? `${std('Content-Length', ': ', String(other))}\r\n${std('Content-Length')}` : `${std('Content-Length')}\r\n${std('Content-Length', ': ', String(other))}`) + end,
          // Two lengths that differ: which one frames the body cannot be known, so the stream is broken
          // (as HTTP/1.1 rules it, RFC 9112 §6.3).
          expect: 'violation',
          label: 'two-lengths',
        })),
    },
    { weight: 1, arbitrary: fc.constant<Header>({ text: `${std('Content-Length')}\r\n${std('Content-Length')}${end}`, expect: 'lenient', label: 'two-equal-lengths' }) },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom('-1', '+5', '5.0', '0x10', '', 'abc', '1e3', '9999999999999', '123456789012345678901', ' ', String(length).replace(/^/, '-'))
        .map((v): Header => ({ text: `Content-Length: ${v}${end}`, expect: 'violation', label: 'bad-length' })),
    },
    {
      weight: 2,
      arbitrary: fc
        .integer({ min: FUZZ_MAX_MESSAGE_BYTES + 1, max: 999_999_999_999 })
        .map((n): Header => ({ text: std('Content-Length', ': ', String(n)) + end, expect: 'violation', label: `over-cap-${n}` })),
    },
    { weight: 1, arbitrary: fc.constant<Header>({ text: `Content-Type: application/vscode-jsonrpc${end}`, expect: 'violation', label: 'no-length' }) },
    { weight: 1, arbitrary: fc.constant<Header>({ text: `Content-Length ${length}${end}`, expect: 'violation', label: 'no-colon' }) },
    {
      weight: 1,
      arbitrary: fc.constantFrom('Content-Lengthy', 'Content-', 'Contentlength', 'X-Content-Length').map((n): Header => ({ text: std(n) + end, expect: 'violation', label: 'wrong-name' })),
    },
    {
      weight: 3,
      arbitrary: fc.integer({ min: 1, max: 64 }).map(
        (k): Header => ({ text: std('Content-Length', ': ', String(Math.max(0, length - k))) + end, expect: 'violation', claim: 'shorter', shortBy: k, label: `short-by-${k}` }),
      ),
    },
    {
      weight: 2,
      arbitrary: fc.integer({ min: 1, max: 64 }).map((k): Header => ({ text: std('Content-Length', ': ', String(length + k)) + end, expect: 'unknown', claim: 'longer', label: `long-by-${k}` })),
    },
  );
};

const HEADER_START = 'content-';

/** A body cut short by its header: broken unless the cut is JSON and what is left over could start a header. */
function shortClaim(body: Buffer, claimed: number): Expect {
  const kept = body.subarray(0, claimed).toString('utf8');
  const rest = body.subarray(claimed).toString('latin1').toLowerCase();
  try {
    JSON.parse(kept);
  } catch {
    return 'violation';
  }
  const couldBeHeader = rest.startsWith(HEADER_START) || HEADER_START.startsWith(rest.slice(0, HEADER_START.length));
  return couldBeHeader ? 'unknown' : 'violation';
}

function frame(pendingIds: readonly number[]): fc.Arbitrary<Piece> {
  return body(pendingIds).chain((b) => {
    const bytes = Buffer.from(b.text, 'utf8');
    return headerFor(bytes.length).map((h): Piece => {
      let expect: Expect;
      if (h.claim === 'shorter') expect = shortClaim(bytes, Math.max(0, bytes.length - (h.shortBy ?? 0)));
      else if (h.expect === 'lenient') expect = b.expect === 'violation' ? 'violation' : 'unknown';
      else if (h.expect === 'ok') expect = b.expect;
      else expect = h.expect;
      // A body over the cap is refused on its header whatever the header looks like, as long as it is read.
      if (bytes.length > FUZZ_MAX_MESSAGE_BYTES && h.expect === 'ok') expect = 'violation';
      return {
        bytes: Buffer.concat([Buffer.from(h.text, 'latin1'), bytes]),
        expect,
        exit: b.exit && expect === 'ok',
        notRpc: b.notRpc && expect === 'ok',
        label: `${h.label}+${b.label}`,
      };
    });
  });
}

/** A body really over the cap, framed canonically. */
const oversized = fc.integer({ min: 1, max: 4096 }).map((extra): Piece => {
  const text = JSON.stringify({ jsonrpc: '2.0', method: 'vm/event', params: { pad: 'x'.repeat(FUZZ_MAX_MESSAGE_BYTES + extra) } });
  return { bytes: Buffer.from(`Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`), expect: 'violation', exit: false, notRpc: false, label: 'oversized-body' };
});

const randomBytes = fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b): Piece => ({ bytes: Buffer.from(b), expect: 'unknown', exit: false, notRpc: false, label: 'random-bytes' }));

const truncated = (pendingIds: readonly number[]): fc.Arbitrary<Piece> =>
  fc.tuple(frame(pendingIds), fc.double({ min: 0, max: 1, noNaN: true })).map(([p, at]): Piece => {
    const cut = Math.floor(p.bytes.length * at);
    return { bytes: p.bytes.subarray(0, cut), expect: cut === 0 ? 'ok' : 'unknown', exit: false, notRpc: false, label: `truncated@${cut}:${p.label}` };
  });

/**
 * A well-framed message with a deep nesting where a reader looks hardest: a result's state (the shim compares
 * states as JSON), an error's data (vscode-jsonrpc logs the error of an answer without id), an event's state, a
 * request's params. Depths past the stack (10,000 and 100,000 levels) and below it.
 */
const deepMessage = (pendingIds: readonly number[]): fc.Arbitrary<Piece> => {
  const id = fc.oneof(fc.constantFrom(...(pendingIds.length ? pendingIds : [0])), fc.constant(null));
  const template = fc.oneof(
    id.map((i) => ({ jsonrpc: '2.0', id: i, result: { status: 'running', state: DEEP_MARK } })),
    id.map((i) => ({ jsonrpc: '2.0', id: i, error: { code: -31008, message: 'deep', data: DEEP_MARK } })),
    fc.constant({ jsonrpc: '2.0', method: 'vm/event', params: { vmId: FUZZ_VM_ID, seq: 0, time: '2025-01-01T00:00:00.000Z', type: 'state', state: DEEP_MARK } }),
    fc.constantFrom(...METHOD_NAMES, 'x-fuzz/echo').map((method) => ({ jsonrpc: '2.0', id: 7, method, params: { vmId: FUZZ_VM_ID, state: DEEP_MARK } })),
  );
  const depth = fc.oneof(fc.constant(100_000), fc.constant(10_000), fc.integer({ min: 100, max: 1_000 }));
  return fc.tuple(template, depth).map(([m, n]): Piece => {
    const text = render(m, n);
    return { bytes: Buffer.from(`Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`), expect: 'ok', exit: false, notRpc: false, label: `deep-message-${n}` };
  });
};

export function piece(pendingIds: readonly number[]): fc.Arbitrary<Piece> {
  return fc.oneof(
    { weight: 30, arbitrary: frame(pendingIds) },
    { weight: 1, arbitrary: deepMessage(pendingIds) },
    { weight: 2, arbitrary: randomBytes },
    { weight: 2, arbitrary: truncated(pendingIds) },
    { weight: 1, arbitrary: oversized },
  );
}

/** A whole stream: mostly frames, now and then a piece that breaks it; written whole or in small chunks. */
export function fuzzInput(pendingIds: readonly number[], maxPieces = 8): fc.Arbitrary<FuzzInput> {
  return fc.record({
    pieces: fc.array(piece(pendingIds), { minLength: 1, maxLength: maxPieces }),
    chunks: fc.oneof(fc.constant<number[]>([]), fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 5 })),
  });
}
