/**
 * Content-Length framing (the LSP base protocol, as vscode-jsonrpc speaks it) as a pure codec: bytes in,
 * message bodies out. The size cap is checked on the header, before a byte of the body is buffered.
 */

export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const MAX_HEADER_BYTES = 1024;
const HEADER_END = Buffer.from('\r\n\r\n');
const HEADER_PREFIX = Buffer.from('content-');

export class FramingError extends Error {
  override readonly name = 'FramingError';
  constructor(
    message: string,
    /** The first bytes that did not fit the framing, for the error report. */
    readonly firstBytes?: string,
  ) {
    super(message);
  }
}

export function previewBytes(buf: Uint8Array, n = 32): string {
  return JSON.stringify(Buffer.from(buf.subarray(0, n)).toString('latin1'));
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

/**
 * The length from a header that is exactly `Content-Length: <digits>`, as every writer here sends it, read
 * straight from the bytes; undefined for anything else, which the general parser then handles.
 */
function plainContentLength(buf: Buffer, end: number): number | undefined {
  const digits = end - PLAIN_HEADER.length;
  if (digits < 1 || digits > MAX_LENGTH_DIGITS) return undefined;
  for (let i = 0; i < PLAIN_HEADER.length; i++) if (buf[i] !== PLAIN_HEADER[i]) return undefined;
  let n = 0;
  for (let i = PLAIN_HEADER.length; i < end; i++) {
    const d = (buf[i] as number) - 0x30;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return n;
}

export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  private bodyLength = -1;

  constructor(readonly maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES) {}

  /** Appends a chunk and returns every complete body it completes. Throws FramingError on bad input. */
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      if (this.bodyLength < 0) {
        if (!looksLikeHeader(this.buf)) {
          throw new FramingError(`expected a Content-Length header, got ${previewBytes(this.buf)}`, previewBytes(this.buf));
        }
        const end = this.buf.indexOf(HEADER_END);
        if (end < 0) {
          if (this.buf.length > MAX_HEADER_BYTES) {
            throw new FramingError(`header longer than ${MAX_HEADER_BYTES} bytes: ${previewBytes(this.buf)}`, previewBytes(this.buf));
          }
          return out;
        }
        const length = plainContentLength(this.buf, end) ?? this.parseHeader(this.buf.subarray(0, end).toString('latin1'));
        if (length > this.maxMessageBytes) {
          throw new FramingError(`message of ${length} bytes exceeds the limit of ${this.maxMessageBytes} bytes`);
        }
        this.bodyLength = length;
        this.buf = this.buf.subarray(end + HEADER_END.length);
      }
      if (this.buf.length < this.bodyLength) return out;
      out.push(this.buf.subarray(0, this.bodyLength));
      this.buf = this.buf.subarray(this.bodyLength);
      this.bodyLength = -1;
      if (this.buf.length === 0) return out;
    }
  }

  private parseHeader(header: string): number {
    let length: number | undefined;
    for (const line of header.split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon < 0) throw new FramingError(`malformed header line ${JSON.stringify(line)}`, JSON.stringify(line));
      if (line.slice(0, colon).trim().toLowerCase() === 'content-length') {
        const v = line.slice(colon + 1).trim();
        if (!/^\d{1,12}$/.test(v)) throw new FramingError(`bad Content-Length ${JSON.stringify(v)}`, JSON.stringify(line));
        length = Number(v);
      }
    }
    if (length === undefined) throw new FramingError(`header without Content-Length: ${JSON.stringify(header)}`);
    return length;
  }
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
