import type { Logger } from 'pino';
import * as z from 'zod/mini';
import { TokenBucket } from './token-bucket.js';

/** The most of one stderr line that is kept; the rest of the line is counted and dropped, never buffered. */
export const MAX_LOG_LINE_BYTES = 64 * 1024;
/**
 * Lines of a plugin's stderr the host logs: LOG_LINE_BURST at once, LOG_LINE_RATE a second sustained. Past that
 * they are counted, kept for the crash tail, and dropped: a plugin writing short lines as fast as it can made the
 * host's logger buffer without bound (700 MB in 20 s) and its event loop lag a second.
 */
export const LOG_LINE_RATE = 1_000;
export const LOG_LINE_BURST = 5_000;
/** How many of the last stderr lines go into crash errors (`PluginExitedError.stderrTail`). */
export const STDERR_TAIL_LINES = 20;
/** The most bytes those tail lines hold together, so that a crash error stays a readable size. */
export const STDERR_TAIL_BYTES = 8 * 1024;
/** The most of one line the tail keeps, so that one long line cannot push every other line out of it. */
export const STDERR_TAIL_LINE_BYTES = 2 * 1024;

export interface PluginLogLimits {
  lineBytes: number;
  tailLines: number;
  tailBytes: number;
  tailLineBytes: number;
}

const DEFAULT_LIMITS: PluginLogLimits = {
  lineBytes: MAX_LOG_LINE_BYTES,
  tailLines: STDERR_TAIL_LINES,
  tailBytes: STDERR_TAIL_BYTES,
  tailLineBytes: STDERR_TAIL_LINE_BYTES,
};

const PINO_LEVELS: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  // A plugin's fatal is the plugin's end, not the host's: pino flushes synchronously at fatal, blocking the host.
  60: 'error',
};

const PinoLine = z.looseObject({ level: z.number().check(z.int()), msg: z.optional(z.string()) });
const NEWLINE = 0x0a;

/**
 * A plugin's stderr is its log channel. pino JSON lines are re-emitted at their own level through the
 * host's logger (bound to plugin and pid), the plugin's own fields nested under `fields` so that they
 * cannot stand in for the host's; anything else is kept as text. The last lines are kept for crash reports.
 *
 * Work is linear in the bytes read: each chunk is scanned once for newlines, and a line is held as the
 * list of its pieces up to MAX_LOG_LINE_BYTES; past that its bytes are only counted.
 */
export class PluginLog {
  private readonly limits: PluginLogLimits;
  private readonly tail: string[] = [];
  private tailTotal = 0;
  private pieces: Buffer[] = [];
  private kept = 0;
  private dropped = 0;
  private readonly budget = new TokenBucket(LOG_LINE_RATE, LOG_LINE_BURST);
  /** Lines over the budget since the last one logged. */
  private unlogged = 0;

  constructor(
    private readonly logger: Logger,
    limits: Partial<PluginLogLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  /** Bytes of the unfinished line held now; never more than the line cap. */
  get pendingBytes(): number {
    return this.kept;
  }

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      this.keep(chunk.subarray(start, nl < 0 ? chunk.length : nl));
      if (nl < 0) return;
      this.endLine();
      start = nl + 1;
    }
  }

  flush(): void {
    if (this.kept > 0 || this.dropped > 0) this.endLine();
    this.reportUnlogged();
  }

  lastLines(): string[] {
    return [...this.tail];
  }

  private keep(piece: Buffer): void {
    const room = this.limits.lineBytes - this.kept;
    if (piece.length <= room) {
      if (piece.length > 0) this.pieces.push(piece);
      this.kept += piece.length;
      return;
    }
    // A copy, so that what is kept of a line does not pin the whole chunk it came in.
    if (room > 0) this.pieces.push(Buffer.from(piece.subarray(0, room)));
    this.kept += room;
    this.dropped += piece.length - room;
  }

  private endLine(): void {
    let bytes = this.pieces.length === 1 ? (this.pieces[0] as Buffer) : Buffer.concat(this.pieces, this.kept);
    let dropped = this.dropped;
    this.pieces = [];
    this.kept = 0;
    this.dropped = 0;
    if (dropped === 0 && bytes.at(-1) === 0x0d) bytes = bytes.subarray(0, -1);
    if (bytes.length === 0 && dropped === 0) return;
    const whole = utf8Prefix(bytes, bytes.length);
    dropped += bytes.length - whole;
    const text = bytes.subarray(0, whole).toString('utf8');
    const line = dropped > 0 ? `${text}${marker(dropped)}` : text;
    this.remember(cut(bytes.subarray(0, whole), dropped, this.limits.tailLineBytes));
    if (!this.budget.take()) {
      this.unlogged++;
      return;
    }
    this.reportUnlogged();
    // A cut line is no longer whole JSON: it can only be text.
    const parsed = dropped === 0 && line.startsWith('{') ? PinoLine.safeParse(safeJson(line)) : undefined;
    if (parsed?.success) {
      const { level, msg, time: _time, pid: _pid, hostname: _host, ...fields } = parsed.data;
      const method = PINO_LEVELS[level] ?? 'info';
      if (Object.keys(fields).length > 0) this.logger[method]({ fields }, msg ?? '');
      else this.logger[method](msg ?? '');
    } else {
      // Not the SDK's log: a stack trace, a script's echo, a VMM's complaint. Seen at the default level, as it is rare.
      this.logger.warn({ stderr: true }, line);
    }
  }

  private reportUnlogged(): void {
    if (this.unlogged === 0) return;
    this.logger.warn({ unlogged: this.unlogged }, `the plugin wrote ${this.unlogged} stderr lines over ${LOG_LINE_RATE} a second; they were not logged`);
    this.unlogged = 0;
  }

  private remember(line: string): void {
    const size = Buffer.byteLength(line);
    this.tail.push(line);
    this.tailTotal += size;
    while (this.tail.length > this.limits.tailLines || (this.tailTotal > this.limits.tailBytes && this.tail.length > 1)) {
      this.tailTotal -= Buffer.byteLength(this.tail.shift() as string);
    }
  }
}

function marker(dropped: number): string {
  return `… [truncated ${dropped} bytes]`;
}

/** `bytes` (a line of which `dropped` more bytes were already dropped) as text of at most `max` bytes, marker included. */
function cut(bytes: Buffer, dropped: number, max: number): string {
  if (dropped === 0 && bytes.length <= max) return bytes.toString('utf8');
  // The marker is widest when nothing is kept; sizing for that, the kept part always fits beside it.
  const room = Math.max(0, max - Buffer.byteLength(marker(dropped + bytes.length)));
  const keep = utf8Prefix(bytes, Math.min(room, bytes.length));
  return `${bytes.subarray(0, keep).toString('utf8')}${marker(dropped + bytes.length - keep)}`;
}

/** The longest prefix of `bytes[0, n)` that does not end inside a UTF-8 character. */
function utf8Prefix(bytes: Buffer, n: number): number {
  // Back up over continuation bytes (10xxxxxx) to the lead byte of the last character.
  let lead = n - 1;
  while (lead >= 0 && lead > n - 4 && ((bytes[lead] as number) & 0xc0) === 0x80) lead--;
  if (lead < 0) return n;
  const b = bytes[lead] as number;
  const width = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
  return lead + width <= n ? n : lead;
}

function safeJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}
