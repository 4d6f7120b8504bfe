import type { Readable, Writable } from 'node:stream';
// The codec itself, not hvplug/transport: its index also holds the vscode-jsonrpc reader and writer of the daemon's API.
import { FrameDecoder, FramingError, frameText, parseBody } from '../transport/framing.js';
import { AnswerBatcher } from './answer-batch.js';
import { refusal } from './inbound.js';

const CANCEL = '$/cancelRequest';
/** JSON-RPC's own codes, for what the dispatcher answers itself. */
const METHOD_NOT_FOUND = -32601;
const INTERNAL_ERROR = -32603;

/** An error answered as it is: its code, message and data. */
export class RpcError extends Error {
  override readonly name = 'RpcError';
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }
}

/** A request being handled: its cancellation. */
export class IncomingCall {
  private wasCancelled = false;
  private controller: AbortController | undefined;

  /** Whether the host cancelled the call; reading it makes no signal. */
  get cancelled(): boolean {
    return this.wasCancelled;
  }

  /**
   * Aborted when the host cancels the call. Made on first use (born aborted if the call was cancelled
   * before): an AbortController per call costs more than a no-op handler, and most handlers never look at it.
   */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.wasCancelled) this.controller.abort();
    }
    return this.controller.signal;
  }

  cancel(): void {
    this.wasCancelled = true;
    this.controller?.abort();
  }
}

/** Answers a request: its result (undefined: null), a promise of it, or throws; an RpcError is answered as it is. */
export type RequestHandler = (params: unknown, call: IncomingCall) => unknown;

export interface RpcOptions {
  input: Readable;
  /** The stream the frames go to; watched for errors and its end. */
  output: Writable;
  /** Writes frames to the output (the real stdout writer when stray writes are diverted). */
  write: (frames: string) => unknown;
  maxMessageBytes: number;
  /** Requests by method; any other method is answered with MethodNotFound. */
  requests: ReadonlyMap<string, RequestHandler>;
  /** Notifications by method; others are ignored (their params are the handler's to check). */
  notifications: ReadonlyMap<string, (params: unknown) => void>;
  /** A message from the host that is dropped, and why (a reason that quotes nothing of the message). */
  dropped: (reason: string) => void;
  /** Something the plugin failed to send, and why. */
  failed: (err: unknown, what: string) => void;
  /** The session is over: the input ended, the output closed, or the stream broke (`err`). Called once. */
  ended: (err?: unknown) => void;
}

type Id = string | number;

export const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';

/** Whether `err` is answered with its own code, message and data: an RpcError, or a ResponseError of vscode-jsonrpc. */
export function answeredAsIs(err: unknown): err is { code: number; message: string; data?: unknown } {
  if (err instanceof RpcError) return true;
  return err instanceof Error && err.constructor.name === 'ResponseError' && Number.isInteger((err as { code?: unknown }).code);
}

/** How a thrown error is answered: as it is when answeredAsIs, the rest as InternalError. */
function errorObject(err: unknown, method: string): { code: number; message: string; data?: unknown } {
  if (answeredAsIs(err)) {
    const { code, message, data } = err;
    return data === undefined ? { code, message } : { code, message, data };
  }
  const message = err instanceof Error ? err.message : undefined;
  return {
    code: INTERNAL_ERROR,
    message: typeof message === 'string' ? `Request ${method} failed with message: ${message}` : `Request ${method} failed unexpectedly without providing any details.`,
  };
}

/**
 * The plugin's end of JSON-RPC 2.0 over Content-Length frames, without a library: each read from the input is
 * decoded (framing.ts, capped at maxMessageBytes per message), and its messages are dispatched at once, in
 * order; a handler's answer leaves when it settles, in the batches of answer-batch.ts. Cancellations reach the
 * call's signal. A message the host should not have sent is dropped with a reason (inbound.ts); a stream that
 * breaks the framing, or a body that is not JSON, ends the session: nothing after it can be trusted.
 * What it holds: one partial frame (≤ maxMessageBytes), the calls under way, and one batch of answers.
 */
export class RpcEndpoint {
  private readonly decoder: FrameDecoder;
  private readonly batcher: AnswerBatcher;
  /** The calls under way, by id. */
  private readonly running = new Map<Id, IncomingCall>();
  private stopped = false;
  private over = false;
  private readonly detach: () => void;

  constructor(private readonly opts: RpcOptions) {
    this.decoder = new FrameDecoder(opts.maxMessageBytes);
    this.batcher = new AnswerBatcher((frames) => {
      // Frames for a stream that has gone are dropped: the session is ending already (its 'close' or 'error').
      if (opts.output.destroyed || opts.output.writableEnded) return;
      try {
        opts.write(frames);
      } catch (err) {
        // Thrown out of a read or a timer it would end the process; the output is no use any more either way.
        this.end(err);
      }
    });
    const { input, output } = opts;
    const onError = (err: unknown): void => this.end(err);
    const onEnd = (): void => this.end();
    input.on('data', this.read);
    input.on('end', onEnd);
    input.on('error', onError);
    output.on('error', onError);
    output.on('close', onEnd);
    this.detach = () => {
      input.off('data', this.read);
      input.off('end', onEnd);
      input.off('error', onError);
      output.off('error', onError);
      output.off('close', onEnd);
    };
  }

  /** Sends a notification (held a moment to leave with an answer, see answer-batch.ts). */
  notify(method: string, params: unknown): void {
    if (this.stopped) return;
    let frame: string;
    try {
      frame = frameText(JSON.stringify({ jsonrpc: '2.0', method, params }), this.opts.maxMessageBytes);
    } catch (err) {
      this.opts.failed(err, `cannot send ${method}`);
      return;
    }
    this.batcher.notified(frame);
  }

  /** Writes what is held now. */
  flush(): void {
    if (!this.stopped) this.batcher.flush();
  }

  /** Stops for good: reads nothing more, writes nothing more (what is held is dropped), leaves the streams open. */
  stop(): void {
    this.stopped = true;
    this.over = true;
    this.detach();
    this.batcher.stop();
    this.running.clear();
  }

  /** Ends the session (the host said exit, or the stream broke: `err`): reads nothing more, still answers. */
  end(err?: unknown): void {
    if (this.over) return;
    this.over = true;
    this.opts.ended(err);
  }

  private readonly read = (chunk: Buffer): void => {
    if (this.over) return;
    this.batcher.beginRead();
    try {
      // Body by body, so that what came before a framing error is still dispatched, in order.
      this.decoder.each(chunk, this.onBody);
    } catch (err) {
      // The decoder's own: anything else is not the stream's fault.
      if (!(err instanceof FramingError)) throw err;
      this.end(err);
    } finally {
      this.batcher.endRead();
    }
  };

  /** One body, decoded from the chunk's bytes as they are (no Buffer per body); false once the session is over. */
  private readonly onBody = (buf: Buffer, start: number, end: number): boolean => {
    let msg: unknown;
    try {
      msg = parseBody(buf, start, end);
    } catch (err) {
      this.end(err);
      return false;
    }
    this.dispatch(msg);
    return !this.over;
  };

  private dispatch(msg: unknown): void {
    const reason = refusal(msg);
    if (reason !== undefined) {
      this.opts.dropped(reason);
      return;
    }
    // refusal() let through only objects whose method is a string and whose id is a string or a number.
    const { id, method, params } = msg as { id?: Id; method?: string; params?: unknown };
    if (method === undefined) return; // An answer: the plugin asks the host nothing.
    if (id === undefined) this.notification(method, params);
    else this.request(id, method, params);
  }

  private notification(method: string, params: unknown): void {
    if (method === CANCEL) {
      this.running.get((params as { id: Id }).id)?.cancel();
      return;
    }
    const handler = this.opts.notifications.get(method);
    if (!handler) return;
    try {
      handler(params);
    } catch (err) {
      this.opts.failed(err, `the ${method} notification's handler failed`);
    }
  }

  private request(id: Id, method: string, params: unknown): void {
    const burst = this.batcher.started();
    const handler = this.opts.requests.get(method);
    if (!handler) {
      this.answer(id, method, burst, undefined, new RpcError(METHOD_NOT_FOUND, `Unhandled method ${method}`));
      return;
    }
    const call = new IncomingCall();
    let out: unknown;
    try {
      out = handler(params, call);
    } catch (err) {
      this.answer(id, method, burst, undefined, err ?? new Error('thrown without a value'));
      return;
    }
    if (!isThenable(out)) {
      // Answered at once: nothing was read meanwhile, so nothing could cancel it, and it is not kept by id.
      this.answer(id, method, burst, out, undefined);
      return;
    }
    // Only a call that runs on can be cancelled: it is kept by id until it settles.
    this.running.set(id, call);
    // A method, not a closure per call: only a promise needs one kept for later.
    out.then(
      (result) => this.done(id, call, method, burst, result),
      (err: unknown) => this.done(id, call, method, burst, undefined, err ?? new Error('rejected without a value')),
    );
  }

  private done(id: Id, call: IncomingCall, method: string, burst: number, result: unknown, error?: unknown): void {
    // A host that reuses an id while the first call runs cancels the later call only.
    if (this.running.get(id) === call) this.running.delete(id);
    this.answer(id, method, burst, result, error);
  }

  private answer(id: Id, method: string, burst: number, result: unknown, error: unknown): void {
    if (this.stopped) return;
    const max = this.opts.maxMessageBytes;
    let text = '';
    try {
      text =
        error === undefined
          ? frameText(JSON.stringify({ jsonrpc: '2.0', id, result: result === undefined ? null : result }), max)
          : frameText(JSON.stringify({ jsonrpc: '2.0', id, error: errorObject(error, method) }), max);
    } catch (err) {
      // A result (or error data) that cannot be sent (over the cap, not serializable): the host still gets an answer.
      try {
        text = frameText(JSON.stringify({ jsonrpc: '2.0', id, error: errorObject(err, method) }), max);
      } catch (again) {
        this.opts.failed(again, `cannot answer ${method}`);
      }
    }
    this.batcher.answered(text, burst);
  }
}
