import type { Readable, Writable } from 'node:stream';
import type { DataCallback, Disposable, Message } from 'vscode-jsonrpc/node';
import { DEFAULT_MAX_MESSAGE_BYTES, FramedReader, FramedWriter, FramingError } from 'hvplug/transport';

/**
 * The framed stdio a PluginClient speaks over. A module of its own, loaded when the first plugin is spawned:
 * hvplug/transport brings vscode-jsonrpc, which an embedder that only imports hvplug should not carry.
 */

type Tracer = (direction: 'send' | 'receive', message: unknown) => void;

class TracedReader extends FramedReader {
  constructor(readable: Readable, maxMessageBytes: number, private readonly tracer: Tracer) {
    super(readable, maxMessageBytes);
  }

  override listen(callback: DataCallback): Disposable {
    return super.listen((msg) => {
      this.tracer('receive', msg);
      callback(msg);
    });
  }
}

class TracedWriter extends FramedWriter {
  constructor(writable: Writable, maxMessageBytes: number, writeFrame: (frame: string) => void, private readonly tracer: Tracer) {
    super(writable, maxMessageBytes, writeFrame);
  }

  override write(msg: Message): Promise<void> {
    this.tracer('send', msg);
    return super.write(msg);
  }
}

export function reader(stdout: Readable, maxMessageBytes: number, trace: Tracer | undefined): FramedReader {
  return trace ? new TracedReader(stdout, maxMessageBytes, trace) : new FramedReader(stdout, maxMessageBytes);
}

export function writer(stdin: Writable, maxMessageBytes: number, writeFrame: (frame: string) => void, trace: Tracer | undefined): FramedWriter {
  return trace ? new TracedWriter(stdin, maxMessageBytes, writeFrame, trace) : new FramedWriter(stdin, maxMessageBytes, writeFrame);
}

export { DEFAULT_MAX_MESSAGE_BYTES, FramingError };

export type Wire = typeof import('./plugin-wire.js');
