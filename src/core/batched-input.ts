import type { Writable } from 'node:stream';

/** A batch leaves early once this big: host and plugin then work at the same time instead of in turns. */
const MAX_BATCH_CHARS = 4 * 1024;

/**
 * Bytes the host lets wait in a plugin's stdin pipe before it calls the plugin broken. Past it the plugin is not
 * reading what it is sent (or sends requests faster than it reads their answers), and the host's memory would
 * grow with every call.
 */
export const MAX_UNREAD_INPUT_BYTES = 64 * 1024 * 1024;

/**
 * The plugin's stdin. Frames written in the same tick leave joined, in one write at its end: under load, a
 * wake-up of the plugin then brings it many requests instead of one. A frame that nothing can join leaves at
 * once (`alone`: no other call is outstanding and nothing is held), rather than after the caller's stack has
 * unwound: a one-at-a-time caller's request is on the wire that much sooner.
 */
export class BatchedInput {
  private batch = '';

  constructor(
    private readonly stream: Writable,
    private readonly onOverflow: () => void,
    /** Whether a frame written now has no company to wait for (no other call outstanding). */
    private readonly alone: () => boolean = () => false,
  ) {}

  readonly write = (frame: string): void => {
    if (this.batch === '') {
      if (this.alone()) {
        this.send(frame);
        return;
      }
      process.nextTick(this.flush);
    }
    this.batch += frame;
    if (this.batch.length >= MAX_BATCH_CHARS) this.flush();
  };

  private send(frames: string): void {
    if (this.stream.destroyed) return;
    this.stream.write(frames);
    if (this.stream.writableLength > MAX_UNREAD_INPUT_BYTES) this.onOverflow();
  }

  private readonly flush = (): void => {
    if (this.batch === '') return;
    const frames = this.batch;
    this.batch = '';
    this.send(frames);
  };

  /** EOF after what is still waiting for the end of the tick (the `exit` notification, say). */
  end(): void {
    this.flush();
    this.stream.end();
  }
}
