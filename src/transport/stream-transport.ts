import type { Readable, Writable } from 'node:stream';
import { AbstractMessageReader, AbstractMessageWriter, type DataCallback, type Disposable, type Message, type MessageReader } from 'vscode-jsonrpc/node';
import { FrameReader, FrameWriter } from './frame-stream.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from './framing.js';

/**
 * FrameReader and FrameWriter as vscode-jsonrpc's MessageReader and MessageWriter, for the ends that use its
 * MessageConnection (the daemon's server and client). The host and the plugin SDK do not: they use the framing
 * directly, so that neither a process embedding the host nor a plugin loads vscode-jsonrpc.
 */
export class FramedReader extends AbstractMessageReader {
  private readonly frames: FrameReader;

  constructor(readable: Readable, maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES) {
    super();
    this.frames = new FrameReader(readable, maxMessageBytes);
  }

  listen(callback: DataCallback): Disposable {
    this.frames.listen({
      message: (msg) => callback(msg as Message),
      error: (err) => this.fireError(err),
      close: () => this.fireClose(),
    });
    return { dispose: () => this.frames.release() };
  }

  /** Stops reading for good and leaves the stream to its owner: the daemon's console, raw after one answer. */
  release(): void {
    this.frames.release();
  }
}

/**
 * `inner`, showing each message to `see` as it is read, before vscode-jsonrpc gets it; a message for which
 * `see` returns false has been dealt with and does not reach vscode-jsonrpc.
 */
export function tapReader(inner: MessageReader, see: (msg: Message) => boolean): MessageReader {
  return {
    onError: inner.onError,
    onClose: inner.onClose,
    onPartialMessage: inner.onPartialMessage,
    listen: (callback) =>
      inner.listen((msg) => {
        if (see(msg)) callback(msg);
      }),
    dispose: () => inner.dispose(),
  };
}

export class FramedWriter extends AbstractMessageWriter {
  private readonly frames: FrameWriter<Message>;
  private errorCount = 0;

  constructor(
    writable: Writable,
    maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES,
    /** A plugin that diverts stray stdout writes to stderr passes the real writer here (and sees what each frame is). */
    writeFrame: (frame: string, msg: Message) => unknown = (frame) => writable.write(frame),
  ) {
    super();
    this.frames = new FrameWriter<Message>(writable, maxMessageBytes, writeFrame, {
      error: (err) => this.fireError(err, undefined, ++this.errorCount),
      close: () => this.fireClose(),
    });
  }

  write(msg: Message): Promise<void> {
    try {
      this.frames.write(msg);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return Promise.resolve();
  }

  end(): void {
    this.frames.end();
  }
}
