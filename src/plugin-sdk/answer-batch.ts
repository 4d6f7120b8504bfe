import type { Message, MessageReader, MessageStrategy } from 'vscode-jsonrpc/node';
import { tapReader } from 'hvplug/transport';

/** vscode-jsonrpc acts on some cancellations itself, without queueing them: they are left out of the count. */
const CANCEL = '$/cancelRequest';
const MAX_BATCH_CHARS = 16 * 1024;
const MAX_HOLD_MS = 1;

const counted = (msg: Message): boolean => (msg as { method?: unknown }).method !== CANCEL;
const isRequest = (msg: Message): boolean => 'id' in msg && 'method' in msg;
const isAnswer = (msg: Message): boolean => 'id' in msg && !('method' in msg);

/**
 * The plugin's answers leave in one write per burst of requests. vscode-jsonrpc queues the messages its
 * reader hands it and dispatches one per event-loop turn; while messages of a burst still wait in that queue,
 * answers (and events) are held and joined, and the one written when the queue is empty takes them all. A
 * lone request is answered at once. An event sent while a request is being handled waits for an answer, so
 * that a call's events and its answer (vm/pause: `paused`, then the answer) reach the host in one read, which
 * handles them in one turn and records their change in one write. Every pipe write wakes the host: under
 * load, a write per answer was half of the plugin's time. Nothing is held longer than MAX_HOLD_MS (an event
 * while a long call, vm/wait say, is under way), or past MAX_BATCH_CHARS (kept small, so that the host reads
 * the first answers while the plugin works on the rest).
 */
export class AnswerBatcher {
  /** Messages handed to vscode-jsonrpc and not yet dispatched. */
  private queued = 0;
  /** Requests dispatched and not answered yet. */
  private answering = 0;
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
      if (isRequest(msg)) this.answering++;
      return next(msg);
    },
  };

  /** `msg` is what the frame holds (absent: taken for an answer, written at once). */
  readonly write = (frame: string, msg?: Message): void => {
    this.batch += frame;
    const answer = msg === undefined || isAnswer(msg);
    // Kept from going below 0, so that no miscount can hold events for good.
    if (answer && msg !== undefined) this.answering = Math.max(0, this.answering - 1);
    const hold = this.queued > 0 || (!answer && this.answering > 0);
    if (!hold || this.batch.length >= MAX_BATCH_CHARS) this.flush();
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
