import type { Readable, Writable } from 'node:stream';
import { DEFAULT_MAX_MESSAGE_BYTES, FrameDecoder, FramingError, frameText, parseBody } from './framing.js';

/**
 * Messages over a byte stream, framed by the codec in framing.ts, with no JSON-RPC library under them: the host
 * reads and writes its plugins' pipes with these, and loads nothing more for it. They open nothing themselves:
 * both sides hand them the streams they own (the plugin its stdio, the host the child's pipes or a socket).
 *
 * Memory: a reader holds at most one message body (≤ maxMessageBytes, checked on its header before a byte of it
 * is kept) and one header (≤ 1 KiB); a writer holds nothing (the caller's writeFrame or the stream does).
 */

export interface FrameReaderHandlers {
  /** One message, as JSON.parse made it: nothing of it is checked. Must not throw (it runs in a stream listener). */
  message(msg: unknown): void;
  /**
   * The stream broke the framing or sent a body that is not JSON (a FramingError; nothing more is read from it),
   * or the stream itself failed (its 'error').
   */
  error(err: Error): void;
  /** The stream ended. */
  close(): void;
}

export class FrameReader {
  private readonly decoder: FrameDecoder;
  private handlers: FrameReaderHandlers | undefined;
  private stopped = false;

  constructor(
    private readonly readable: Readable,
    maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES,
  ) {
    this.decoder = new FrameDecoder(maxMessageBytes);
  }

  /** Starts reading; once per reader. */
  listen(handlers: FrameReaderHandlers): void {
    if (this.handlers) throw new Error('this FrameReader is already listening');
    this.handlers = handlers;
    this.readable.on('data', this.onData);
    this.readable.on('end', this.onEnd);
    this.readable.on('error', this.onError);
  }

  /**
   * Stops reading for good and leaves the stream to its owner, unread from here (the daemon's console, raw
   * after one answer). No handler runs after it, not even for the rest of a chunk already read.
   */
  release(): void {
    this.stopped = true;
    this.readable.off('data', this.onData);
    this.readable.off('end', this.onEnd);
    this.readable.off('error', this.onError);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.stopped) return;
    try {
      this.decoder.each(chunk, this.onBody);
    } catch (err) {
      // The decoder's own: anything else (a handler that threw, against its contract) is not a framing error.
      if (!(err instanceof FramingError)) throw err;
      this.broken(err);
    }
  };

  /** One body, decoded from the chunk's bytes as they are (no Buffer per body); false once nothing more is read. */
  private readonly onBody = (buf: Buffer, start: number, end: number): boolean => {
    let msg: unknown;
    try {
      msg = parseBody(buf, start, end);
    } catch (err) {
      this.broken(err as FramingError);
      return false;
    }
    this.handlers?.message(msg);
    // The handler may have released the stream.
    return !this.stopped;
  };

  private readonly onEnd = (): void => this.handlers?.close();
  private readonly onError = (err: Error): void => this.handlers?.error(err);

  /**
   * After a framing error the rest of the stream cannot be trusted: it is dropped rather than mis-parsed. Still
   * drained (removing a 'data' listener does not pause a flowing stream): a writer blocked on a full pipe is not
   * left hanging, and 'end' still comes.
   */
  private broken(err: Error): void {
    this.stopped = true;
    this.readable.off('data', this.onData);
    this.handlers?.error(err);
  }
}

export interface FrameWriterHandlers {
  /** The stream failed (EPIPE when the reader went away, a reset socket): reported here, never thrown. */
  error?(err: Error): void;
  /** The stream closed. */
  close?(): void;
}

/** What write throws for a stream that has ended or been destroyed. */
export class StreamClosedError extends Error {
  override readonly name = 'StreamClosedError';
  constructor() {
    super('the stream is closed');
  }
}

export class FrameWriter<M extends object = object> {
  constructor(
    private readonly writable: Writable,
    private readonly maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES,
    /**
     * Where each frame goes, with the message it holds: the stream by default; a writer that batches frames
     * (the host's), or that diverts stray stdout writes (a plugin's), passes its own.
     */
    private readonly writeFrame: (frame: string, msg: M) => unknown = (frame) => writable.write(frame),
    handlers: FrameWriterHandlers = {},
  ) {
    // Always listened to: a stream's 'error' with no listener would be thrown from the event loop.
    writable.on('error', (err) => handlers.error?.(err));
    if (handlers.close) writable.on('close', handlers.close);
  }

  /**
   * Frames `msg` and hands the frame to writeFrame. Throws, having written nothing, a FramingError for a message
   * over maxMessageBytes and a StreamClosedError once the stream has ended or been destroyed.
   */
  write(msg: M): void {
    if (this.writable.destroyed || this.writable.writableEnded) throw new StreamClosedError();
    this.writeFrame(frameText(JSON.stringify(msg), this.maxMessageBytes), msg);
  }

  end(): void {
    this.writable.end();
  }
}
