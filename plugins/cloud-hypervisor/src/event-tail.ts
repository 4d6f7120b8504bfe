// Reads what the VMM appended to its --event-monitor file since the last read. Unlike followEventFile's
// timed polling, a read is an explicit step: the plugin reads right after each API call (CH writes the
// event before it answers), so the events of a call are announced before the call's result, and reads
// once more when the VMM exits, so nothing it wrote last is lost.
import { open } from 'node:fs/promises';
import { EventStreamParser, type ChEvent, type InvalidEventText } from './event-monitor.js';

export interface TailRead {
  readonly events: ChEvent[];
  readonly invalid: InvalidEventText[];
}

export class EventTail {
  constructor(
    readonly path: string,
    /** Bytes consumed: the end of the last complete event read. Saved in the state blob to resume after a restart. */
    public offset: number,
  ) {}

  async read(): Promise<TailRead> {
    const fh = await open(this.path, 'r').catch(() => undefined);
    // The VMM creates the file when it starts; before that there is nothing to read.
    if (!fh) return { events: [], invalid: [] };
    try {
      const { size } = await fh.stat();
      // A VMM started again on the same path truncates the file.
      if (size < this.offset) this.offset = 0;
      if (size === this.offset) return { events: [], invalid: [] };
      const buf = Buffer.alloc(size - this.offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
      // A fresh parser from the offset: an event cut in half by the read is read whole next time.
      const results = new EventStreamParser().push(buf.subarray(0, bytesRead));
      const last = results.at(-1);
      if (last) this.offset += last.endByte;
      return {
        events: results.flatMap((r) => (r.kind === 'event' ? [r.event] : [])),
        invalid: results.flatMap((r) => (r.kind === 'invalid' ? [{ text: r.text, reason: r.reason }] : [])),
      };
    } finally {
      await fh.close();
    }
  }
}
