// Reads Cloud Hypervisor's --event-monitor output. event_monitor/src/lib.rs writes each event with
// serde_json::to_string_pretty followed by "\n\n", so one event spans several lines: the stream is
// split into top-level JSON objects by brace depth, not by lines (compact one-line objects work too).
import { open } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';
import * as z from 'zod/mini';

export const ChEvent = z.object({
  /** A Rust Duration since the VMM set up its monitor. */
  timestamp: z.object({ secs: z.int().check(z.minimum(0)), nanos: z.int().check(z.minimum(0), z.maximum(999_999_999)) }),
  /** "vmm", "vm", "virtio-device", "cpu_manager", ... */
  source: z.string(),
  /** "starting", "booting", "booted", "pausing", "paused", "resuming", "resumed", "shutdown", "deleted", "device-removed", ... */
  event: z.string(),
  properties: z.nullable(z.record(z.string(), z.string())),
});
export type ChEvent = z.output<typeof ChEvent>;

/** Text in the stream that is not a valid event: kept, so a caller can log what the VMM wrote. */
export interface InvalidEventText {
  readonly text: string;
  readonly reason: string;
}

type Classified = { readonly kind: 'event'; readonly event: ChEvent } | ({ readonly kind: 'invalid' } & InvalidEventText);

export type EventParseResult = Classified & {
  /** Bytes of the stream up to the end of this result: where a reader resumes without repeating it. */
  readonly endByte: number;
};

/** Milliseconds since the VMM's monitor started. */
export function eventTimeMs(ev: ChEvent): number {
  return ev.timestamp.secs * 1000 + ev.timestamp.nanos / 1e6;
}

function classify(text: string): Classified {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { kind: 'invalid', text, reason: `not JSON: ${String(e)}` };
  }
  const parsed = ChEvent.safeParse(value);
  if (parsed.success) return { kind: 'event', event: parsed.data };
  return { kind: 'invalid', text, reason: parsed.error.issues.map((i) => `${i.path.join('.') || '(event)'}: ${i.message}`).join('; ') };
}

/** Incremental splitter: feed chunks as they arrive, get every event completed so far. */
export class EventStreamParser {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** Index in `pending` where the scan resumes. */
  private scanned = 0;
  /** Bytes consumed before `pending`. */
  private consumed = 0;

  /** Removes the first `n` characters of `pending`, counting their bytes as consumed. */
  private take(n: number): string {
    const text = this.pending.slice(0, n);
    this.pending = this.pending.slice(n);
    this.consumed += Buffer.byteLength(text);
    return text;
  }

  push(chunk: string | Buffer): EventParseResult[] {
    this.pending += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    return this.drain();
  }

  /** The stream ended: anything left over is a truncated event. */
  end(): EventParseResult[] {
    this.pending += this.decoder.end();
    const out = this.drain();
    const rest = this.take(this.pending.length).trim();
    if (rest) out.push({ kind: 'invalid', text: rest, reason: 'stream ended inside an event', endByte: this.consumed });
    this.resetScan();
    return out;
  }

  private resetScan(): void {
    this.scanned = 0;
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
  }

  private drain(): EventParseResult[] {
    const out: EventParseResult[] = [];
    let i = this.scanned;
    while (i < this.pending.length) {
      const c = this.pending[i]!;
      if (this.depth === 0) {
        if (c === '{') {
          // Text before an object that is not whitespace is junk the VMM (or something else) wrote.
          const junk = this.take(i).trim();
          if (junk) out.push({ kind: 'invalid', text: junk, reason: 'text outside an event object', endByte: this.consumed });
          i = 0;
          this.depth = 1;
        }
        i++;
        continue;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') this.inString = false;
      } else if (c === '"') {
        this.inString = true;
      } else if (c === '{') {
        this.depth++;
      } else if (c === '}') {
        this.depth--;
        if (this.depth === 0) {
          const text = this.take(i + 1);
          out.push({ ...classify(text), endByte: this.consumed });
          this.resetScan();
          i = 0;
          continue;
        }
      }
      i++;
    }
    this.scanned = i;
    return out;
  }
}

/** Events from a stream the VMM writes to (the read end of the pipe given as --event-monitor fd=<n>). */
export async function* readEventStream(stream: Readable): AsyncGenerator<EventParseResult> {
  const parser = new EventStreamParser();
  for await (const chunk of stream) {
    yield* parser.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array));
  }
  yield* parser.end();
}

export interface FollowOptions {
  /** Byte offset to start from: where a previous reader stopped, to resume without repeats after a restart. */
  readonly fromOffset?: number;
  readonly pollMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Follows a --event-monitor path=<file> as the VMM appends to it, until the signal aborts. The file
 * may not exist yet (the VMM creates it) and is truncated when a VMM is started on it again, in which
 * case reading restarts from its beginning. Each result's `endByte` is its end offset in the file.
 */
export async function* followEventFile(path: string, opts: FollowOptions = {}): AsyncGenerator<EventParseResult> {
  const pollMs = opts.pollMs ?? 100;
  let base = opts.fromOffset ?? 0;
  let parser = new EventStreamParser();
  let readPos = base;
  const buf = Buffer.alloc(64 * 1024);
  while (!opts.signal?.aborted) {
    const fh = await open(path, 'r').catch(() => undefined);
    if (fh) {
      try {
        if ((await fh.stat()).size < readPos) {
          base = 0;
          readPos = 0;
          parser = new EventStreamParser();
        }
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, readPos);
          if (bytesRead === 0) break;
          readPos += bytesRead;
          for (const r of parser.push(buf.subarray(0, bytesRead))) yield { ...r, endByte: base + r.endByte };
        }
      } finally {
        await fh.close();
      }
    }
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(t);
        opts.signal?.removeEventListener('abort', wake);
        resolve();
      };
      const t = setTimeout(wake, pollMs);
      opts.signal?.addEventListener('abort', wake, { once: true });
    });
  }
}
