import type { Readable, Writable } from 'node:stream';
import { AbstractMessageReader, AbstractMessageWriter, type DataCallback, type Disposable, type Message, type MessageReader } from 'vscode-jsonrpc/node';
import { DEFAULT_MAX_MESSAGE_BYTES, FrameDecoder, FramingError, frameText, previewBytes } from './framing.js';

/**
 * vscode-jsonrpc reader and writer over the framing codec. They open nothing themselves: both sides hand
 * them the streams they own (the plugin its stdio, the host the child's pipes).
 */
export class FramedReader extends AbstractMessageReader {
  private readonly decoder: FrameDecoder;
  private stopped = false;
  private listening: Disposable | undefined;

  constructor(
    private readonly readable: Readable,
    maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES,
  ) {
    super();
    this.decoder = new FrameDecoder(maxMessageBytes);
  }

  listen(callback: DataCallback): Disposable {
    const onData = (chunk: Buffer): void => {
      if (this.stopped) return;
      let bodies: Buffer[];
      try {
        bodies = this.decoder.push(chunk);
      } catch (err) {
        this.stop();
        this.fireError(err);
        return;
      }
      for (const body of bodies) {
        let msg: Message;
        try {
          msg = JSON.parse(body.toString('utf8')) as Message;
        } catch {
          this.stop();
          this.fireError(new FramingError(`message body is not JSON: ${previewBytes(body)}`, previewBytes(body)));
          return;
        }
        callback(msg);
      }
    };
    const onEnd = (): void => this.fireClose();
    const onError = (err: Error): void => this.fireError(err);
    this.readable.on('data', onData);
    this.readable.on('end', onEnd);
    this.readable.on('error', onError);
    this.listening = {
      dispose: () => {
        this.readable.off('data', onData);
        this.readable.off('end', onEnd);
        this.readable.off('error', onError);
      },
    };
    return this.listening;
  }

  /** Stops reading for good and leaves the stream to its owner: the daemon's console, raw after one answer. */
  release(): void {
    this.stopped = true;
    this.listening?.dispose();
  }

  /** After a framing error the rest of the stream cannot be trusted: drop it rather than mis-parse. */
  private stop(): void {
    this.stopped = true;
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
  private errorCount = 0;

  constructor(
    private readonly writable: Writable,
    private readonly maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES,
    /** A plugin that diverts stray stdout writes to stderr passes the real writer here (and sees what each frame is). */
    private readonly writeFrame: (frame: string, msg: Message) => unknown = (frame) => writable.write(frame),
  ) {
    super();
    writable.on('error', (err) => this.fireError(err, undefined, ++this.errorCount));
    writable.on('close', () => this.fireClose());
  }

  write(msg: Message): Promise<void> {
    let frame: string;
    try {
      frame = frameText(JSON.stringify(msg), this.maxMessageBytes);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.writable.destroyed || this.writable.writableEnded) {
      return Promise.reject(new Error('the stream is closed'));
    }
    this.writeFrame(frame, msg);
    return Promise.resolve();
  }

  end(): void {
    this.writable.end();
  }
}
