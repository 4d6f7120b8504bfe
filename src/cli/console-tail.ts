import { open, type FileHandle } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { CliFailure } from './errors.js';

/**
 * A console log this user may not read, said at once by both its readers (logs, and console for a log console): the
 * file is another user's, the daemon's when a member of its --group asks, and that group is given the daemon's API,
 * not its files. undefined for any other error.
 */
export function unreadableLog(path: string, err: unknown): CliFailure | undefined {
  if ((err as NodeJS.ErrnoException).code !== 'EACCES') return undefined;
  return new CliFailure(`cannot read the console log ${path}: permission denied (hvplug reads the file itself, which a member of a daemon's --group may not: the group is given the daemon's API, not its files)`);
}

/** A line longer than this is passed on in pieces rather than held without bound. */
const MAX_LINE = 64 * 1024;

/** Bytes in, whole lines out, with UTF-8 sequences split across reads kept intact. */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private partial = '';

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: Buffer): void {
    const parts = (this.partial + this.decoder.write(chunk)).split('\n');
    this.partial = parts.pop() ?? '';
    for (const p of parts) this.onLine(p.endsWith('\r') ? p.slice(0, -1) : p);
    while (this.partial.length > MAX_LINE) {
      this.onLine(this.partial.slice(0, MAX_LINE));
      this.partial = this.partial.slice(MAX_LINE);
    }
  }

  /** The unterminated last line, if any: a guest that dies mid-line still shows what it wrote. */
  end(): void {
    const rest = this.partial + this.decoder.end();
    this.partial = '';
    if (rest) this.onLine(rest);
  }
}

export interface ConsoleFollower {
  /** Reads what is left, passes on the last partial line, and releases the file or socket. */
  stop(): Promise<void>;
}

export interface FollowOptions {
  /** How often the file is checked for growth. */
  intervalMs?: number;
  onError?: (err: Error) => void;
  /** Byte offset of the log file to start from (`hvplug logs --tail`); the start of the file by default. */
  from?: number;
}

/**
 * Follows a log file as it grows, like `tail -F` from its first byte. Polling rather than fs.watch,
 * because watch events are unreliable across filesystems and the file may not exist yet when we start.
 */
export class FileTail implements ConsoleFollower {
  private handle: FileHandle | undefined;
  private position = 0;
  private readonly lines: LineSplitter;
  private readonly timer: NodeJS.Timeout;
  private reading: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly buf = Buffer.alloc(64 * 1024);

  constructor(
    readonly path: string,
    onLine: (line: string) => void,
    private readonly opts: FollowOptions = {},
  ) {
    this.lines = new LineSplitter(onLine);
    this.position = opts.from ?? 0;
    this.timer = setInterval(() => void this.poll(), opts.intervalMs ?? 100);
    void this.poll();
  }

  /** Serialized, so reads never overlap and lines come out in file order. */
  poll(): Promise<void> {
    this.reading = this.reading.then(() => this.readNew()).catch((err: Error) => this.opts.onError?.(err));
    return this.reading;
  }

  private async readNew(): Promise<void> {
    if (!this.handle) {
      try {
        this.handle = await open(this.path, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
    }
    // A file truncated under us (log rotation) is read again from its start.
    const { size } = await this.handle.stat();
    if (size < this.position) this.position = 0;
    for (;;) {
      const { bytesRead } = await this.handle.read(this.buf, 0, this.buf.length, this.position);
      if (bytesRead === 0) return;
      this.position += bytesRead;
      this.lines.push(this.buf.subarray(0, bytesRead));
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    await this.poll();
    this.lines.end();
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
  }
}

/** Reads a console served on a unix socket (the VMM's serial port as a socket server). */
export class SocketTail implements ConsoleFollower {
  private readonly socket: Socket;
  private readonly lines: LineSplitter;
  private readonly closed: Promise<void>;

  constructor(path: string, onLine: (line: string) => void, opts: FollowOptions = {}) {
    this.lines = new LineSplitter(onLine);
    this.socket = createConnection(path);
    this.socket.on('data', (chunk: Buffer) => this.lines.push(chunk));
    this.socket.on('error', (err) => opts.onError?.(err));
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  async stop(): Promise<void> {
    this.socket.end();
    // A VMM that already went away closes at once; one that keeps the socket open is not waited for.
    await Promise.race([this.closed, new Promise((r) => setTimeout(r, 500).unref())]);
    this.socket.destroy();
    this.lines.end();
  }
}

/** A follower for the console kinds that can be read without taking it over; undefined for a pty. */
export function followConsole(
  console: { kind: 'log' | 'socket' | 'pty'; path: string },
  onLine: (line: string) => void,
  opts: FollowOptions = {},
): ConsoleFollower | undefined {
  if (console.kind === 'log') return new FileTail(console.path, onLine, opts);
  if (console.kind === 'socket') return new SocketTail(console.path, onLine, opts);
  return undefined;
}
