/**
 * Content-Length framing (the LSP base protocol, as vscode-jsonrpc speaks it) as a pure codec: bytes in,
 * message bodies out. The size cap is checked on the header, before a byte of the body is buffered.
 */
// Imported, not node's global: that global is a getter, run at every use, and each frame written uses it.
import { Buffer } from 'node:buffer';

export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/**
 * The most leaf values a message may hold: scalars, and arrays and objects with nothing in them. A reader checks each
 * against a schema, and a list whose every item is wrong costs it an issue apiece: 16 MiB of `[0,0,…]` made the host
 * build 4 million of them (9 s, 1.5 GB) or overflow zod's stack. At this cap the worst case is some 100 ms. Depth
 * alone costs little (a schema reports a value too deep once), so a chain of nested arrays is one leaf.
 */
export const MAX_MESSAGE_VALUES = 10_000;
/** Bodies up to this size are not counted: too small to hold enough values to matter (and every call's answer is one). */
const COUNTED_FROM_BYTES = 4 * 1024;
const MAX_HEADER_BYTES = 1024;
const HEADER_END = Buffer.from('\r\n\r\n');
/** A header ends within this many bytes of its start, or it is longer than MAX_HEADER_BYTES. */
const HEADER_WINDOW = MAX_HEADER_BYTES + HEADER_END.length;
const HEADER_PREFIX = Buffer.from('content-');

export class FramingError extends Error {
  override readonly name = 'FramingError';
  constructor(
    message: string,
    /** The first bytes that did not fit the framing, for the error report. */
    readonly firstBytes?: string,
    /** Set when the bytes were not a header at all (a print on stdout): what was written, quoted. */
    readonly stray?: string,
  ) {
    super(message);
  }
}

export function previewBytes(buf: Uint8Array, n = 32): string {
  return JSON.stringify(Buffer.from(buf.subarray(0, n)).toString('latin1'));
}

/**
 * The JSON of one body, bytes start..end of the chunk it came in (no Buffer made for it); a FramingError when it is
 * not JSON, quoting its first bytes.
 */
export function parseBody(buf: Buffer, start: number, end: number): unknown {
  let msg: unknown;
  try {
    // No encoding named: utf8, toString's default, without the look-up of an encoding by name.
    msg = JSON.parse(buf.toString(undefined, start, end));
  } catch {
    const preview = previewBytes(buf.subarray(start, end));
    throw new FramingError(`message body is not JSON: ${preview}`, preview);
  }
  if (end - start > COUNTED_FROM_BYTES && holdsOver(msg, MAX_MESSAGE_VALUES)) {
    const preview = previewBytes(buf.subarray(start, end));
    throw new FramingError(`a message of ${end - start} bytes holds over ${MAX_MESSAGE_VALUES.toLocaleString('en')} values (scalars, empty arrays and objects): ${preview}`, preview);
  }
  return msg;
}

/** Whether `value` holds more than `max` leaf values (MAX_MESSAGE_VALUES); stops counting past it. */
function holdsOver(value: unknown, max: number): boolean {
  // A stack, not recursion: a message may nest as deep as JSON.parse goes.
  const stack: object[] = typeof value === 'object' && value !== null ? [value] : [];
  let n = 0;
  for (let v = stack.pop(); v !== undefined; v = stack.pop()) {
    const items: unknown[] = Array.isArray(v) ? v : Object.values(v);
    if (items.length === 0) n++;
    for (const item of items) {
      if (typeof item === 'object' && item !== null) stack.push(item);
      else n++;
    }
    if (n > max) return true;
  }
  return false;
}

function looksLikeHeader(buf: Buffer): boolean {
  const n = Math.min(buf.length, HEADER_PREFIX.length);
  for (let i = 0; i < n; i++) {
    const c = buf[i] as number;
    // Lower-case ASCII letters so that Content-Length and content-length both pass.
    const lower = c >= 0x41 && c <= 0x5a ? c + 0x20 : c;
    if (lower !== HEADER_PREFIX[i]) return false;
  }
  return true;
}

const PLAIN_HEADER = Buffer.from('Content-Length: ');
const MAX_LENGTH_DIGITS = 12;

/** The number the ASCII digits from..to of `buf` spell; undefined if any byte there is not a digit. */
function decimal(buf: Buffer, from: number, to: number): number | undefined {
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = (buf[i] as number) - 0x30;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return n;
}

/**
 * The length from a header that is exactly `Content-Length: <digits>`, as every writer here sends it, read
 * straight from the bytes; undefined for anything else, which the general parser then handles.
 */
function plainContentLength(buf: Buffer, end: number): number | undefined {
  const digits = end - PLAIN_HEADER.length;
  if (digits < 1 || digits > MAX_LENGTH_DIGITS) return undefined;
  for (let i = 0; i < PLAIN_HEADER.length; i++) if (buf[i] !== PLAIN_HEADER[i]) return undefined;
  return decimal(buf, PLAIN_HEADER.length, end);
}

/**
 * Where the header starting at `start` ends (the index of its \r\n\r\n) when it is exactly `Content-Length: <digits>`
 * (1 to MAX_LENGTH_DIGITS of them) and that end is in `buf`; -1 for anything else.
 */
function plainHeaderEnd(buf: Buffer, start: number): number {
  const digitsAt = start + PLAIN_HEADER.length;
  if (buf.length < digitsAt + 1 + HEADER_END.length) return -1;
  for (let i = 0; i < PLAIN_HEADER.length; i++) if (buf[start + i] !== PLAIN_HEADER[i]) return -1;
  let end = digitsAt;
  const stop = Math.min(buf.length, digitsAt + MAX_LENGTH_DIGITS);
  while (end < stop && (buf[end] as number) >= 0x30 && (buf[end] as number) <= 0x39) end++;
  if (end === digitsAt || end + HEADER_END.length > buf.length) return -1;
  for (let i = 0; i < HEADER_END.length; i++) if (buf[end + i] !== HEADER_END[i]) return -1;
  return end;
}

/**
 * Work is linear in the bytes pushed: a body that spans chunks is kept as the list of its pieces and
 * copied once, when its last byte arrives; a header is looked for in at most MAX_HEADER_BYTES + 4 bytes.
 * Holds at most one body (≤ maxMessageBytes) and one header's bytes.
 */
export class FrameDecoder {
  /** The start of a header not yet ended, at most MAX_HEADER_BYTES bytes. */
  private head: Buffer = Buffer.alloc(0);
  private bodyLength = -1;
  private pieces: Buffer[] = [];
  private buffered = 0;

  constructor(readonly maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES) {}

  /** Appends a chunk and returns every complete body it completes. Throws FramingError on bad input. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    this.each(chunk, (buf, start, end) => {
      out.push(buf.subarray(start, end));
      return true;
    });
    return out;
  }

  /**
   * push without a Buffer per body: each body the chunk completes goes to `onBody`, in order, as the bytes from
   * `start` to `end` of `buf` (the chunk itself when the body lies in it; a copy joining its pieces when it spans
   * chunks), until onBody returns false. Returns how many bytes of the chunk it took: all of them, or those up to the
   * end of the body after which onBody returned false (the rest is the caller's: pushOne). Throws FramingError on bad
   * input, after handing over the bodies before it.
   */
  each(chunk: Buffer, onBody: (buf: Buffer, start: number, end: number) => boolean): number {
    let at = 0;
    for (;;) {
      if (this.bodyLength < 0) {
        if (at >= chunk.length) return chunk.length;
        const taken = this.readHeaderAt(chunk, at);
        if (taken < 0) return chunk.length;
        at += taken;
      }
      const need = this.bodyLength - this.buffered;
      const left = chunk.length - at;
      if (left < need) {
        if (left > 0) this.pieces.push(at === 0 ? chunk : chunk.subarray(at));
        this.buffered += left;
        return chunk.length;
      }
      const length = this.bodyLength;
      this.bodyLength = -1;
      let more: boolean;
      if (this.pieces.length === 0) {
        more = onBody(chunk, at, at + need);
      } else {
        const body = Buffer.concat([...this.pieces, chunk.subarray(at, at + need)], length);
        this.pieces = [];
        this.buffered = 0;
        more = onBody(body, 0, length);
      }
      at += need;
      if (!more) return at;
    }
  }

  /**
   * Appends a chunk and returns the first body it completes with the bytes after it, untouched: for a stream that
   * stops being framed after one message (the daemon's console). Undefined while no body is complete.
   */
  pushOne(chunk: Buffer): { body: Buffer; rest: Buffer } | undefined {
    let body: Buffer | undefined;
    const taken = this.each(chunk, (buf, start, end) => {
      body = buf.subarray(start, end);
      return false;
    });
    return body && { body, rest: chunk.subarray(taken) };
  }

  /**
   * readHeader(chunk.subarray(at)), without the subarray for the usual header: one that starts at `at`, with
   * nothing held, and is exactly `Content-Length: <digits>\r\n\r\n`, as every writer here sends it. Its bytes are
   * read in one pass, without searching the chunk for the header's end. Any other goes the general way.
   */
  private readHeaderAt(chunk: Buffer, at: number): number {
    if (this.head.length === 0) {
      const end = plainHeaderEnd(chunk, at);
      if (end >= 0) {
        // plainHeaderEnd has checked the prefix and that the bytes up to `end` are digits.
        const length = decimal(chunk, at + PLAIN_HEADER.length, end) as number;
        if (length > this.maxMessageBytes) {
          throw new FramingError(`message of ${length} bytes exceeds the limit of ${this.maxMessageBytes} bytes`);
        }
        this.bodyLength = length;
        return end - at + HEADER_END.length;
      }
    }
    return this.readHeader(at === 0 ? chunk : chunk.subarray(at));
  }

  /**
   * Reads a header from the held start of one and `rest`: sets bodyLength and returns how many bytes of
   * `rest` it took, or -1 when the header has not ended yet (its bytes are then held).
   */
  private readHeader(rest: Buffer): number {
    const held = this.head.length;
    const data = held === 0 ? rest.subarray(0, HEADER_WINDOW) : Buffer.concat([this.head, rest.subarray(0, HEADER_WINDOW - held)]);
    if (!looksLikeHeader(data)) {
      throw new FramingError(`expected a Content-Length header, got ${previewBytes(data)}`, previewBytes(data), previewBytes(data));
    }
    const end = data.indexOf(HEADER_END);
    if (end < 0) {
      if (data.length > MAX_HEADER_BYTES) {
        throw new FramingError(`header longer than ${MAX_HEADER_BYTES} bytes: ${previewBytes(data)}`, previewBytes(data));
      }
      // A copy: the held bytes are few, the chunk they came in may be large.
      this.head = Buffer.from(data);
      return -1;
    }
    const length = plainContentLength(data, end) ?? parseHeader(data.subarray(0, end).toString('latin1'));
    if (length > this.maxMessageBytes) {
      throw new FramingError(`message of ${length} bytes exceeds the limit of ${this.maxMessageBytes} bytes`);
    }
    this.bodyLength = length;
    this.head = Buffer.alloc(0);
    return end + HEADER_END.length - held;
  }
}

/** The Content-Length of a header in general form: any case, more header lines, each named at most once for the length. */
function parseHeader(header: string): number {
  let length: number | undefined;
  for (const line of header.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) throw new FramingError(`malformed header line ${JSON.stringify(line)}`, JSON.stringify(line));
    if (line.slice(0, colon).trim().toLowerCase() === 'content-length') {
      // Two lengths make the frame's end ambiguous; a reader that took the other one would mis-frame.
      if (length !== undefined) throw new FramingError(`duplicate Content-Length header ${JSON.stringify(line)}`, JSON.stringify(header));
      const v = line.slice(colon + 1).trim();
      if (!/^\d{1,12}$/.test(v)) throw new FramingError(`bad Content-Length ${JSON.stringify(v)}`, JSON.stringify(line));
      length = Number(v);
    }
  }
  if (length === undefined) throw new FramingError(`header without Content-Length: ${JSON.stringify(header)}`);
  return length;
}

/**
 * A message's whole frame as text, the size cap checked first. Text, because a stream writes a string without
 * the Buffer a byte frame costs per message, and frames written together join into one string and one write.
 */
export function frameText(body: string, maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES): string {
  const length = Buffer.byteLength(body);
  if (length > maxMessageBytes) {
    throw new FramingError(`message of ${length} bytes exceeds the limit of ${maxMessageBytes} bytes`);
  }
  return `Content-Length: ${length}\r\n\r\n${body}`;
}

/** The same frame as bytes, for writers that hold raw bytes (tests, the raw-pipe baseline). */
export function encodeFrame(body: string, maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES): Buffer {
  return Buffer.from(frameText(body, maxMessageBytes), 'utf8');
}
