import * as z from 'zod/mini';
import type { FrameWriter } from '../transport/frame-stream.js';
import { CancelledError, fromWireError, type HvplugError, ProtocolError, TimeoutError } from '../errors/index.js';
import { monotonicMs } from '../proc/index.js';

/**
 * The host's end of JSON-RPC with one plugin: ids, outstanding calls, deadlines, cancellation, and the reading of
 * whatever the plugin sends. Written here rather than left to vscode-jsonrpc's MessageConnection because the host
 * must own every outstanding call: a call that timed out is forgotten at once (vscode-jsonrpc keeps its response
 * promise until an answer that may never come), a closed pipe fails calls instead of throwing from the next timer
 * that sends, and an answer that is not one (both result and error, or neither) is a typed error, not a guess.
 */

/** `$/cancelRequest`: the LSP's cancellation notification, which the SDK and any LSP library understand. */
const CANCEL = '$/cancelRequest';
/** JSON-RPC's "method not found", for requests a plugin sends the host (the host serves none). */
const METHOD_NOT_FOUND = -32601;

const WireError = z.object({ code: z.number().check(z.int()), message: z.string(), data: z.optional(z.unknown()) });
/**
 * The envelope of what a plugin sends: an object (not an array) whose id, if any, is a finite number, a string or
 * null, and whose method, if any, is a string; params, result and error are kept as sent, to be checked by whoever
 * reads them. Plain tests rather than a zod object, which copies every message into a fresh one: the verdict is the
 * same for every input (test/unit/host-rpc.test.ts holds the table), read straight off the message as parsed.
 */
interface Envelope {
  id?: number | string | null;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: unknown;
}

function isEnvelope(raw: unknown): raw is Envelope {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return false;
  const { id, method } = raw as Envelope;
  if (method !== undefined && typeof method !== 'string') return false;
  return id === undefined || id === null || typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id));
}

export interface RpcCallOptions {
  /** null: no deadline (the call may still be aborted). */
  timeoutMs: number | null;
  signal?: AbortSignal;
  /** Runs as the answer is read, before the messages after it. */
  onAnswer?: () => void;
}

export interface RpcPeer {
  /** A notification from the plugin, in wire order with the answers around it. */
  notification(method: string, params: unknown): void;
  /** The plugin sent something that breaks the protocol beyond one call: the client fails it. */
  fatal(err: ProtocolError): void;
  /** Something worth a log line that breaks nothing (a late answer, an answer to an unknown id). */
  note(message: string, fields: Record<string, unknown>): void;
}

/**
 * One outstanding call. The abort listener is the call itself (handleEvent), so an abortable call costs no
 * closure.
 */
class OutgoingCall {
  /** monotonicMs() time at which expire runs. */
  deadline = 0;
  /** Neighbours in its timeout's list of calls (Deadlines). */
  prev: OutgoingCall | undefined = undefined;
  next: OutgoingCall | undefined = undefined;
  private ended = false;

  constructor(
    private readonly rpc: HostRpc,
    readonly id: number,
    readonly method: string,
    readonly timeoutMs: number | null,
    readonly signal: AbortSignal | undefined,
    readonly onAnswer: (() => void) | undefined,
    private readonly resolve: (value: unknown) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  get done(): boolean {
    return this.ended;
  }

  succeed(value: unknown): void {
    if (this.finish()) this.resolve(value);
  }

  fail(err: Error): void {
    if (this.finish()) this.reject(err);
  }

  /** The deadline passed. */
  expire(): void {
    if (this.done) return;
    this.rpc.cancel(this.id);
    this.fail(new TimeoutError(this.method, this.timeoutMs ?? 0));
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    if (this.done) return;
    this.rpc.cancel(this.id);
    this.fail(new CancelledError(this.method, this.signal?.reason));
  }

  private finish(): boolean {
    if (this.ended) return false;
    this.ended = true;
    this.rpc.forget(this);
    this.signal?.removeEventListener('abort', this);
    return true;
  }
}

/** How many distinct timeouts Deadlines keeps a set for while none of their calls is outstanding. */
const MAX_IDLE_TIMEOUTS = 16;

/**
 * The calls of one timeout, oldest first, linked through the calls themselves: adding and removing one allocates
 * nothing (a Set taking and dropping one call per call rebuilds its table every few calls).
 */
class CallList {
  first: OutgoingCall | undefined = undefined;
  last: OutgoingCall | undefined = undefined;
  size = 0;

  push(call: OutgoingCall): void {
    call.prev = this.last;
    call.next = undefined;
    if (this.last) this.last.next = call;
    else this.first = call;
    this.last = call;
    this.size++;
  }

  remove(call: OutgoingCall): void {
    if (call.prev) call.prev.next = call.next;
    else if (this.first === call) this.first = call.next;
    else return;
    if (call.next) call.next.prev = call.prev;
    else this.last = call.prev;
    call.prev = call.next = undefined;
    this.size--;
  }
}

/**
 * The deadlines of a client's outstanding calls, under one timer armed for the earliest. Calls with the same
 * timeout expire in the order they were made, so each timeout keeps its calls in a list (in order, O(1) removal)
 * and only the first of each is looked at.
 */
class Deadlines {
  private readonly byTimeout = new Map<number, CallList>();
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;

  add(call: OutgoingCall, timeoutMs: number): void {
    call.deadline = monotonicMs() + timeoutMs;
    let calls = this.byTimeout.get(timeoutMs);
    if (!calls) this.byTimeout.set(timeoutMs, (calls = new CallList()));
    calls.push(call);
    if (call.deadline < this.armedFor) this.arm(call.deadline);
  }

  delete(call: OutgoingCall, timeoutMs: number): void {
    // The timer stays armed: disarming and re-arming it around every call of a one-at-a-time caller costs more
    // than the one spurious wake-up per deadline period it saves.
    const calls = this.byTimeout.get(timeoutMs);
    calls?.remove(call);
    // An emptied list stays for the next call with the same timeout (a one-at-a-time caller would otherwise make
    // and drop one per call), as long as few timeouts are kept: callers may pass any number of them.
    if (calls?.size === 0 && this.byTimeout.size > MAX_IDLE_TIMEOUTS) this.byTimeout.delete(timeoutMs);
  }

  /** How many calls have a deadline kept. */
  get size(): number {
    let n = 0;
    for (const calls of this.byTimeout.values()) n += calls.size;
    return n;
  }

  clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
    for (const calls of this.byTimeout.values()) while (calls.first) calls.remove(calls.first);
    this.byTimeout.clear();
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.armedFor = at;
    // Unref'd: an outstanding call keeps the process alive through the plugin's stdout anyway.
    this.timer = setTimeout(this.fire, Math.max(0, Math.ceil(at - monotonicMs()))).unref();
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = monotonicMs();
    const expired: OutgoingCall[] = [];
    let next = Infinity;
    for (const calls of this.byTimeout.values()) {
      for (let call = calls.first; call; call = call.next) {
        if (call.deadline > now) {
          next = Math.min(next, call.deadline);
          break;
        }
        expired.push(call);
      }
    }
    // expire() removes the call (through delete), so it runs after the walk.
    for (const call of expired) call.expire();
    if (next < Infinity) this.arm(next);
  };
}

export class HostRpc {
  private nextId = 1;
  /**
   * The outstanding calls: the one made when none was (a one-at-a-time caller's every call) in `solo`, others in
   * `pending`. A Map that takes and drops one key per call rebuilds its table every few calls.
   */
  private solo: OutgoingCall | undefined;
  private readonly pending = new Map<number, OutgoingCall>();
  private readonly deadlines = new Deadlines();
  private closedWith: HvplugError | undefined;

  constructor(
    /** Throws what it could not send (too big, the stream closed). */
    private readonly writer: Pick<FrameWriter, 'write'>,
    private readonly peer: RpcPeer,
  ) {}

  /** How many calls are outstanding (tests: nothing is kept for a call that has ended). */
  get outstanding(): number {
    return this.pending.size + (this.solo ? 1 : 0);
  }

  /** How many calls have a deadline kept (tests: none for a call that has ended). */
  get withDeadline(): number {
    return this.deadlines.size;
  }

  /** Sends one request. Settles exactly once: answer, typed error, deadline, abort or failAll. */
  call(method: string, params: unknown, opts: RpcCallOptions): Promise<unknown> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const { signal, timeoutMs } = opts;
    const id = this.nextId++;
    let call!: OutgoingCall;
    const promise = new Promise<unknown>((resolve, reject) => {
      call = new OutgoingCall(this, id, method, timeoutMs, signal, opts.onAnswer, resolve, reject);
    });
    if (signal?.aborted) {
      call.fail(new CancelledError(method, signal.reason));
      return promise;
    }
    if (this.solo) this.pending.set(id, call);
    else this.solo = call;
    if (timeoutMs !== null) this.deadlines.add(call, timeoutMs);
    signal?.addEventListener('abort', call, { once: true });
    const unsent = this.send({ jsonrpc: '2.0', id, method, params });
    if (unsent) call.fail(new ProtocolError(`${method}: the request was not sent: ${unsent.message}`));
    return promise;
  }

  notify(method: string, params: unknown): void {
    if (this.closedWith) return;
    this.send({ jsonrpc: '2.0', method, params });
  }

  /** Called by OutgoingCall: the plugin may stop working on a call nobody waits for. */
  cancel(id: number): void {
    this.notify(CANCEL, { id });
  }

  /** Called by OutgoingCall when it ends, however it ends. */
  forget(call: OutgoingCall): void {
    if (this.solo === call) this.solo = undefined;
    else this.pending.delete(call.id);
    if (call.timeoutMs !== null) this.deadlines.delete(call, call.timeoutMs);
  }

  /** Every outstanding call fails with `err`, and so does every later one. */
  failAll(err: HvplugError): void {
    this.closedWith ??= err;
    const calls = [...this.pending.values()];
    // In the order they were made, as one Map held them.
    if (this.solo) calls.push(this.solo);
    calls.sort((a, b) => a.id - b.id);
    for (const call of calls) call.fail(this.closedWith);
    this.deadlines.clear();
  }

  /** What kept `msg` from being sent, or undefined when it was. */
  private send(msg: object): Error | undefined {
    try {
      this.writer.write(msg);
      return undefined;
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  /** One message as the plugin sent it (parsed JSON, nothing trusted). */
  receive(raw: unknown): void {
    if (!isEnvelope(raw)) {
      this.peer.fatal(new ProtocolError(`plugin sent a message that is not a JSON-RPC object: ${preview(raw)}`));
      return;
    }
    const msg = raw;
    if (msg.method !== undefined) {
      if (msg.id === undefined) this.peer.notification(msg.method, msg.params);
      else this.refuseRequest(msg.id, msg.method);
      return;
    }
    if (msg.id === undefined) {
      this.peer.fatal(new ProtocolError(`plugin sent a message with neither method nor id: ${preview(raw)}`));
      return;
    }
    this.answer(msg.id, msg);
  }

  private refuseRequest(id: number | string | null, method: string): void {
    this.peer.note('plugin sent the host a request; the host serves none', { method });
    this.send({ jsonrpc: '2.0', id, error: { code: METHOD_NOT_FOUND, message: `the host serves no methods (${method})` } });
  }

  private answer(id: number | string | null, msg: Envelope): void {
    const call = this.solo?.id === id ? this.solo : typeof id === 'number' ? this.pending.get(id) : undefined;
    if (!call) {
      // An answer after the deadline or an abort is normal; one to an id never sent is the plugin's confusion.
      const late = typeof id === 'number' && Number.isInteger(id) && id > 0 && id < this.nextId;
      this.peer.note(late ? 'answer to a call that has ended' : 'answer to an id the host never sent', { id: preview(id) });
      return;
    }
    // `in`, not Object.hasOwn: a key the message has (its own or not) counts as sent, as it does for id and method.
    const hasResult = 'result' in msg;
    const hasError = 'error' in msg;
    if (hasResult === hasError) {
      call.fail(new ProtocolError(`plugin answered ${call.method} with ${hasResult ? 'both a result and an error' : 'neither a result nor an error'}`));
      return;
    }
    if (hasResult) {
      try {
        call.onAnswer?.();
      } catch {
        // The caller's bookkeeping; the answer stands.
      }
      call.succeed(msg.result);
      return;
    }
    const error = WireError.safeParse(msg.error);
    if (!error.success) {
      call.fail(new ProtocolError(`plugin answered ${call.method} with a malformed error: ${preview(msg.error)}`));
      return;
    }
    call.fail(fromWireError(call.method, error.data.code, error.data.message, error.data.data));
  }
}

/** A short, printable excerpt of something the plugin sent, for error messages. */
function preview(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? typeof value;
  } catch {
    // Too deep to print (String() of nested arrays recurses as deep): say what it is instead.
    text = Array.isArray(value) ? 'an array nested too deep to print' : `a ${typeof value} too deep to print`;
  }
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}
