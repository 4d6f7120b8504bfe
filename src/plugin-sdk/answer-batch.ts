const MAX_BATCH_CHARS = 16 * 1024;
const MAX_HOLD_MS = 1;

/**
 * The plugin's answers leave in one write per burst of requests. A burst is what one read from the input
 * brings: its requests are dispatched together (rpc.ts), and their answers are held and joined until the
 * last of them is in, or until the event loop has run the handlers' ready work (setImmediate), whichever is
 * first; an answer that takes longer leaves on its own when it is ready. A lone request is answered at once.
 * An event sent while a request is being handled waits for an answer, so that a call's events and its answer
 * (vm/pause: `paused`, then the answer) reach the host in one read, which handles them in one turn and
 * records their change in one write. Every pipe write wakes the host: under load, a write per answer was
 * half of the plugin's time. Nothing is held longer than MAX_HOLD_MS (an event while a long call, vm/wait
 * say, is under way), or past MAX_BATCH_CHARS (kept small, so that the host reads the first answers while
 * the plugin works on the rest). The batch is thus at most MAX_BATCH_CHARS plus one frame.
 */
export class AnswerBatcher {
  /** Requests dispatched and not answered yet. */
  private answering = 0;
  /** Requests of the open burst not answered yet. */
  private burstLeft = 0;
  /** The open burst's number: an answer to a request of an earlier burst does not count in this one. */
  private burst = 0;
  /** While the messages of one read are dispatched. */
  private reading = false;
  private burstEnd: NodeJS.Immediate | undefined;
  private batch = '';
  /** The batch holds an answer (not only events). */
  private holdsAnswer = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly writeOut: (frames: string) => unknown) {}

  /** Before the messages of one read are dispatched: they open a burst, or join one still held. */
  beginRead(): void {
    this.reading = true;
    if (this.burstEnd) return;
    // A call of an earlier read still under way (vm/wait, parked for long) must not hold this read's answers.
    this.burst++;
    this.burstLeft = 0;
  }

  /** After they are: what is in is written unless answers of the burst are still to come. */
  endRead(): void {
    this.reading = false;
    this.settle();
  }

  /** A request is dispatched; returns its burst's number, for answered(). */
  started(): number {
    this.answering++;
    this.burstLeft++;
    return this.burst;
  }

  /** The answer to a request started in burst `burst`, as a frame (empty when there is none to send). */
  answered(frame: string, burst: number): void {
    // Kept from going below 0, so that no miscount can hold events for good.
    this.answering = Math.max(0, this.answering - 1);
    if (burst === this.burst && this.burstLeft > 0) this.burstLeft--;
    // The burst's last answer is in: its end has nothing left to wait for. Closed now, not in a turn of its own
    // (an event sent during vm/pause armed it; left armed, it cost the plugin a loop turn and a poll per call).
    if (this.burstLeft === 0 && this.burstEnd && !this.reading) {
      clearImmediate(this.burstEnd);
      this.burstEnd = undefined;
      this.burst++;
    }
    // Empty: the answer could not be sent (rpc.ts logs it); it counts as given all the same.
    if (frame !== '') {
      this.batch += frame;
      this.holdsAnswer = true;
    }
    this.settle();
  }

  /** A notification (an event, progress), as a frame. */
  notified(frame: string): void {
    this.batch += frame;
    this.settle();
  }

  readonly flush = (): void => {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.holdsAnswer = false;
    if (this.batch === '') return;
    const frames = this.batch;
    this.batch = '';
    this.writeOut(frames);
  };

  /** Drops what is held and stops the timers: nothing is written after. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.burstEnd) clearImmediate(this.burstEnd);
    this.burstEnd = undefined;
    this.batch = '';
  }

  private readonly closeBurst = (): void => {
    this.burstEnd = undefined;
    this.burst++;
    this.burstLeft = 0;
    this.settle();
  };

  private settle(): void {
    if (this.batch === '') return;
    if (this.batch.length >= MAX_BATCH_CHARS) this.flush();
    else if (this.reading) return;
    // The handlers' ready work (promises settled at once) runs before the next check phase: what is not in
    // by then takes longer, and is not waited for.
    else if (this.burstLeft > 0) this.burstEnd ??= setImmediate(this.closeBurst);
    else if (!this.holdsAnswer && this.answering > 0) this.timer ??= setTimeout(this.flush, MAX_HOLD_MS);
    else this.flush();
  }
}
