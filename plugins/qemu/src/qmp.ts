// A QMP client over QEMU's monitor socket: greeting, capability negotiation, id-correlated commands
// and asynchronous events. QEMU serves one QMP client per socket at a time; a second connection waits
// in the listen backlog without a greeting until the first one closes.
import { EventEmitter } from 'node:events';
import { type Socket, createConnection } from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import {
  type KnownQmpCommand,
  type QmpEvent,
  type QmpGreeting,
  type QmpResult,
  QMP_RESULTS,
  parseQmpLine,
} from './qmp-schema.js';

export type { QmpEvent, QmpGreeting } from './qmp-schema.js';

/** QEMU refused a command: `errorClass` is QMP's error class (GenericError, DeviceNotFound, ...). */
export class QmpCommandError extends Error {
  override readonly name = 'QmpCommandError';
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${errorClass}: ${desc}`);
  }
}

/** The connection ended (QEMU exited, or close() was called) before the command was answered. */
export class QmpClosedError extends Error {
  override readonly name = 'QmpClosedError';
}

/** QEMU sent something that is not QMP, or a result of an unexpected shape. */
export class QmpProtocolError extends Error {
  override readonly name = 'QmpProtocolError';
}

export class QmpTimeoutError extends Error {
  override readonly name = 'QmpTimeoutError';
}

/** Could not reach a QMP server at the path before the deadline. */
export class QmpConnectError extends Error {
  override readonly name = 'QmpConnectError';
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export type QmpArgs = Readonly<Record<string, unknown>>;

export interface QmpCallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface QmpConnectOptions {
  /** Overall deadline for the socket to appear, accept, greet and negotiate. Default 10 s. */
  readonly timeoutMs?: number;
  /** Pause between attempts while the socket does not exist yet or refuses. Default 20 ms. */
  readonly retryIntervalMs?: number;
  /** Stops retrying, e.g. when the QEMU process exits before it listens. */
  readonly signal?: AbortSignal;
  /** Lines longer than this end the connection. Default 16 MiB. */
  readonly maxLineBytes?: number;
}

interface Pending {
  readonly command: string;
  /** performance.now() time by which it must be answered; Infinity without a timeout. */
  readonly deadline: number;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  /** Its deadline passed: it rejects with QmpTimeoutError. */
  readonly expire: () => void;
}

interface QmpClientEvents {
  event: [QmpEvent];
  /** Once, when the connection is gone; the error says why if it was not close(). */
  close: [Error | undefined];
}

const RETRYABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);

function errnoOf(e: unknown): string {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : 'EIO';
}

function isKnownCommand(command: string): command is KnownQmpCommand {
  return Object.hasOwn(QMP_RESULTS, command);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ path });
    const onError = (e: Error): void => {
      s.destroy();
      reject(e);
    };
    s.once('error', onError);
    s.once('connect', () => {
      s.off('error', onError);
      resolve(s);
    });
  });
}

export class QmpClient extends EventEmitter<QmpClientEvents> {
  private readonly pending = new Map<number, Pending>();
  private readonly decoder = new StringDecoder('utf8');
  private buffered = '';
  private nextId = 1;
  private closeReason: Error | undefined;
  private isClosed = false;
  private greetingWaiter: { resolve: (g: QmpGreeting) => void; reject: (e: Error) => void } | undefined;
  private greetingValue: QmpGreeting | undefined;
  /** The one timer of every pending command's deadline (watch), armed for `armedFor`. */
  private deadlineTimer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;
  /** Settles when the connection is gone, whatever the reason. */
  readonly closed: Promise<Error | undefined>;

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
    private readonly maxLineBytes: number,
  ) {
    super();
    this.closed = new Promise((resolve) => this.once('close', resolve));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // QEMU exiting (on quit, say) may reset the connection rather than close it: that is its close too.
    socket.on('error', (e: NodeJS.ErrnoException) => {
      const reset = e.code === 'ECONNRESET' || e.code === 'EPIPE';
      this.shutdown(new QmpClosedError(reset ? `QMP connection to ${path} closed (${e.message})` : `QMP connection to ${path} failed: ${e.message}`));
    });
    socket.on('close', () => this.shutdown(new QmpClosedError(`QMP connection to ${path} closed`)));
  }

  /**
   * Connects, retrying while the socket is missing or refusing (QEMU creates it shortly after it
   * starts), reads the greeting and negotiates capabilities.
   */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    const retryMs = opts.retryIntervalMs ?? 20;
    let socket: Socket | undefined;
    let lastCode = 'ENOENT';
    while (socket === undefined) {
      if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new QmpConnectError(`connecting to ${path} aborted`, 'ABORTED');
      try {
        socket = await openSocket(path);
      } catch (e) {
        lastCode = errnoOf(e);
        if (!RETRYABLE.has(lastCode)) throw new QmpConnectError(`cannot connect to QMP socket ${path}: ${lastCode}`, lastCode);
        if (Date.now() + retryMs > deadline) throw new QmpConnectError(`no QMP server at ${path} within the deadline (last error ${lastCode})`, lastCode);
        await sleep(retryMs);
      }
    }
    const client = new QmpClient(socket, path, opts.maxLineBytes ?? 16 * 1024 * 1024);
    const remaining = Math.max(1, deadline - Date.now());
    const onAbort = (): void => client.shutdown(new QmpConnectError(`connecting to ${path} aborted`, 'ABORTED'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const timer = setTimeout(
        () => client.shutdown(new QmpTimeoutError(`no QMP greeting on ${path} within the deadline (is another client connected?)`)),
        remaining,
      );
      try {
        await client.greeting();
        await client.execute('qmp_capabilities', undefined, { timeoutMs: remaining });
      } finally {
        clearTimeout(timer);
      }
    } catch (e) {
      client.close();
      throw e;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
    return client;
  }

  /** QEMU's greeting: its version and the capabilities it offers. */
  greeting(): Promise<QmpGreeting> {
    if (this.greetingValue) return Promise.resolve(this.greetingValue);
    if (this.isClosed) return Promise.reject(this.closeReason ?? new QmpClosedError('QMP connection closed'));
    return new Promise((resolve, reject) => {
      this.greetingWaiter = { resolve, reject };
    });
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** Runs a command; for the commands in QMP_RESULTS the result is checked and typed. */
  execute<C extends KnownQmpCommand>(command: C, args?: QmpArgs, opts?: QmpCallOptions): Promise<QmpResult<C>>;
  execute(command: string, args?: QmpArgs, opts?: QmpCallOptions): Promise<unknown>;
  async execute(command: string, args?: QmpArgs, opts: QmpCallOptions = {}): Promise<unknown> {
    const raw = await this.send(command, args, opts);
    if (!isKnownCommand(command)) return raw;
    const parsed = QMP_RESULTS[command].safeParse(raw);
    if (!parsed.success) throw new QmpProtocolError(`unexpected result of ${command}: ${parsed.error.message}`);
    return parsed.data;
  }

  private send(command: string, args: QmpArgs | undefined, opts: QmpCallOptions): Promise<unknown> {
    if (this.isClosed) return Promise.reject(new QmpClosedError(`${command}: ${this.closeReason?.message ?? 'QMP connection closed'}`));
    if (opts.signal?.aborted) return Promise.reject(opts.signal.reason);
    // A number, the shortest id: QEMU's monitor reads a command one byte per main-loop turn (a recvmsg of 1 byte and
    // its wake-ups, ~4.5 µs a byte on the bench machine), so each byte sent is paid by QEMU on every call's path.
    const id = this.nextId++;
    const msg = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
    const deadline = opts.timeoutMs === undefined ? Infinity : performance.now() + opts.timeoutMs;
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        opts.signal?.removeEventListener('abort', onAbort);
        this.pending.delete(id);
      };
      // A command that timed out or was aborted may still take effect in QEMU: its late answer is dropped.
      const onAbort = (): void => {
        cleanup();
        reject(opts.signal?.reason);
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        command,
        deadline,
        resolve: (v) => {
          cleanup();
          resolve(v);
        },
        reject: (e) => {
          cleanup();
          reject(e);
        },
        expire: () => {
          cleanup();
          reject(new QmpTimeoutError(`QMP ${command} not answered within ${opts.timeoutMs} ms`));
        },
      });
      this.watch(deadline);
      this.socket.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /**
   * Has the deadline timer fire by `deadline`. One timer serves every pending command, and it is not disarmed when
   * they are answered: arming and clearing one around each command cost more than the command's own handling
   * (a pause is two of them), and a timer that finds nothing due only re-arms for what is pending then.
   */
  private watch(deadline: number): void {
    if (deadline >= this.armedFor) return;
    clearTimeout(this.deadlineTimer);
    this.armedFor = deadline;
    // Unref'd: a pending command keeps the process alive through its socket anyway.
    this.deadlineTimer = setTimeout(this.expireDue, Math.max(0, Math.ceil(deadline - performance.now()))).unref();
  }

  private readonly expireDue = (): void => {
    this.deadlineTimer = undefined;
    this.armedFor = Infinity;
    const now = performance.now();
    let next = Infinity;
    // expire() removes the command from pending: the walk is over a copy.
    for (const p of [...this.pending.values()]) {
      if (p.deadline <= now) p.expire();
      else next = Math.min(next, p.deadline);
    }
    if (next < Infinity) this.watch(next);
  };

  /**
   * The next `name` event that satisfies `predicate`. Call it before the command that causes the
   * event: events are not buffered, and one that arrived earlier is not seen.
   */
  waitForEvent(name: string, opts: QmpCallOptions & { readonly predicate?: (ev: QmpEvent) => boolean } = {}): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      const onEvent = (ev: QmpEvent): void => {
        if (ev.event !== name || (opts.predicate && !opts.predicate(ev))) return;
        done();
        resolve(ev);
      };
      const onClose = (why: Error | undefined): void => {
        done();
        reject(new QmpClosedError(`waiting for ${name}: ${why?.message ?? 'QMP connection closed'}`));
      };
      const onAbort = (): void => {
        done();
        reject(opts.signal?.reason);
      };
      if (this.isClosed) return onClose(this.closeReason);
      if (opts.signal?.aborted) return onAbort();
      this.on('event', onEvent);
      this.on('close', onClose);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          done();
          reject(new QmpTimeoutError(`no ${name} event within ${opts.timeoutMs} ms`));
        }, opts.timeoutMs);
      }
    });
  }

  /** Closes the connection; QEMU keeps running. Pending commands reject with QmpClosedError. */
  close(): void {
    this.shutdown(undefined);
  }

  private onData(chunk: Buffer): void {
    this.buffered += this.decoder.write(chunk);
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line !== '') this.onLine(line);
      if (this.isClosed) return;
    }
    if (Buffer.byteLength(this.buffered) > this.maxLineBytes) {
      this.shutdown(new QmpProtocolError(`QMP line longer than ${this.maxLineBytes} bytes; starts with ${JSON.stringify(this.buffered.slice(0, 80))}`));
    }
  }

  private onLine(line: string): void {
    const msg = parseQmpLine(line);
    switch (msg.kind) {
      case 'invalid':
        return this.shutdown(new QmpProtocolError(`not a QMP message (${msg.reason}): ${JSON.stringify(line.slice(0, 200))}`));
      case 'greeting':
        this.greetingValue = msg.greeting;
        this.greetingWaiter?.resolve(msg.greeting);
        this.greetingWaiter = undefined;
        return;
      case 'event':
        this.emit('event', msg.event);
        return;
      case 'return':
      case 'error': {
        const p = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
        // Answers to timed-out or aborted commands have no pending entry any more.
        if (!p) return;
        if (msg.kind === 'return') p.resolve(msg.value);
        else p.reject(new QmpCommandError(p.command, msg.errorClass, msg.desc));
        return;
      }
    }
  }

  private shutdown(reason: Error | undefined): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeReason = reason;
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    this.socket.destroy();
    const err = reason ?? new QmpClosedError('QMP connection closed by the client');
    for (const p of [...this.pending.values()]) p.reject(err instanceof QmpClosedError ? new QmpClosedError(`${p.command}: ${err.message}`) : err);
    this.greetingWaiter?.reject(err);
    this.greetingWaiter = undefined;
    this.emit('close', reason);
  }
}
