import type { Message, MessageReader, MessageStrategy } from 'vscode-jsonrpc/node';
import { tapReader } from 'hvplug/transport';

/** vscode-jsonrpc acts on some cancellations itself, without queueing them: they are left out of the count. */
const CANCEL = '$/cancelRequest';
const MAX_BATCH_CHARS = 16 * 1024;
const MAX_HOLD_MS = 1;

const counted = (msg: Message): boolean => (msg as { method?: unknown }).method !== CANCEL;

/**
 * The plugin's answers leave in one write per burst of requests. vscode-jsonrpc queues the messages its
 * reader hands it and dispatches one per event-loop turn; while messages of a burst still wait in that queue,
 * answers (and events) are held and joined, and the one written when the queue is empty takes them all. A
 * lone request is answered at once. Every pipe write wakes the host: under load, a write per answer was half
 * of the plugin's time. Nothing is held longer than MAX_HOLD_MS, or past MAX_BATCH_CHARS (kept small, so
 * that the host reads the first answers while the plugin works on the rest).
 */
export class AnswerBatcher {
  /** Messages handed to vscode-jsonrpc and not yet dispatched. */
  private queued = 0;
  private batch = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly writeOut: (frames: string) => unknown) {}

  /** The reader, counting what it hands over. */
  counting(inner: MessageReader): MessageReader {
    return tapReader(inner, (msg) => {
      if (counted(msg)) this.queued++;
      return true;
    });
  }

  /** Given to the connection: sees each message as it leaves the queue. */
  readonly strategy: MessageStrategy = {
    handleMessage: (msg, next) => {
      if (counted(msg)) this.queued--;
      return next(msg);
    },
  };

  readonly write = (frame: string): void => {
    this.batch += frame;
    if (this.queued <= 0 || this.batch.length >= MAX_BATCH_CHARS) this.flush();
    else this.timer ??= setTimeout(this.flush, MAX_HOLD_MS);
  };

  readonly flush = (): void => {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.batch === '') return;
    const frames = this.batch;
    this.batch = '';
    this.writeOut(frames);
  };
}
