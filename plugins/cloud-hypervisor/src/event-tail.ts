// Reads what the VMM appended to its --event-monitor file since the last read. Unlike followEventFile's
// timed polling, a read is an explicit step: the plugin reads right after each API call (CH writes the
// event before it answers), so the events of a call are announced before the call's result, and reads
// once more when the VMM exits, so nothing it wrote last is lost.
import { open } from 'node:fs/promises';
import { EventStreamParser, type ChEvent, type InvalidEventText } from './event-monitor.js';

/**
 * The most one read takes from the file (and so the biggest buffer it allocates). A catch-up after a restart
 * reads on from the offset of the state the host recorded last, which pauses and resumes do not move (vm.ts):
 * the file may hold many events beyond it. A CH event is some 150 bytes; text that ends no event within one
 * read is skipped as invalid.
 */
export const MAX_READ_BYTES = 256 * 1024;

export interface TailRead {
  readonly events: ChEvent[];
  readonly invalid: InvalidEventText[];
  /** This read took all it may (MAX_READ_BYTES): there may be more to read. */
  readonly more: boolean;
}

const NOTHING: TailRead = { events: [], invalid: [], more: false };

export class EventTail {
  constructor(
    readonly path: string,
    /** Bytes consumed: the end of the last complete event read. Saved in the state blob to resume after a restart. */
    public offset: number,
  ) {}

  async read(): Promise<TailRead> {
    const fh = await open(this.path, 'r').catch(() => undefined);
    // The VMM creates the file when it starts; before that there is nothing to read.
    if (!fh) return NOTHING;
    try {
      const { size } = await fh.stat();
      // A VMM started again on the same path truncates the file.
      if (size < this.offset) this.offset = 0;
      if (size === this.offset) return NOTHING;
      const buf = Buffer.alloc(Math.min(size - this.offset, MAX_READ_BYTES));
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
      const text = buf.subarray(0, bytesRead);
      // Always past something when set: the last event read, or the skipped text.
      const more = bytesRead === MAX_READ_BYTES;
      // A fresh parser from the offset: an event cut in half by the read is read whole next time.
      const results = new EventStreamParser().push(text);
      const last = results.at(-1);
      if (!last && bytesRead === MAX_READ_BYTES) {
        this.offset += bytesRead;
        return { events: [], invalid: [{ text: text.toString('utf8', 0, 200), reason: `no event ends within ${MAX_READ_BYTES} bytes` }], more };
      }
      if (last) this.offset += last.endByte;
      return {
        events: results.flatMap((r) => (r.kind === 'event' ? [r.event] : [])),
        invalid: results.flatMap((r) => (r.kind === 'invalid' ? [{ text: r.text, reason: r.reason }] : [])),
        more,
      };
    } finally {
      await fh.close();
    }
  }
}
