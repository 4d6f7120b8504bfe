// The live-migration transport of the double, after vmm/src/migration/transport.rs and the receiver's state
// machine in vmm/src/lib.rs: `unix:<path>` or `tcp:<host>:<port>` URLs, one connection, and a request/response
// exchange (start, config, state, complete or complete-paused; abandon on the sender's failure) in which every
// request is answered ok or error. The messages are the double's own (one JSON object a line, not the real
// binary protocol), marked so that a double never takes a stream from something else.
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Json, JsonObject } from './config.js';

export const STREAM_MARK = 'cloud-hypervisor-contract-double/migration/1';
/** Cap on one message: a VmConfig and the double's VM state are a few KiB; the API's own body cap is 4 MiB. */
export const MESSAGE_MAX = 4 << 20;

export type Command = 'start' | 'config' | 'state' | 'complete' | 'complete-paused' | 'abandon';

export interface Request {
  readonly command: Command;
  readonly payload?: Json;
}

/** A migration URL's parse, with the validation messages of VmSendMigrationData / VmReceiveMigrationData. */
export type MigrationUrl = { readonly kind: 'unix'; readonly path: string } | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

/** tcp_address_to_server_name: `host:port` or `[v6]:port`, port a u16. Throws the TcpAddressParseError text. */
function parseTcp(address: string): { host: string; port: number } {
  let host: string;
  let portText: string;
  if (address.startsWith('[')) {
    const close = address.indexOf(']');
    if (close < 0) throw new Error("Missing closing ']' for bracketed IPv6 address");
    if (address[close + 1] !== ':') throw new Error('Missing port separator after bracketed host');
    host = address.slice(1, close);
    portText = address.slice(close + 2);
  } else {
    const colon = address.lastIndexOf(':');
    if (colon < 0) throw new Error('Missing TCP port');
    host = address.slice(0, colon);
    portText = address.slice(colon + 1);
  }
  if (host === '') throw new Error('Host must not be empty');
  if (portText === '') throw new Error('Port must not be empty');
  const port = /^\d+$/.test(portText) ? Number(portText) : NaN;
  if (!Number.isInteger(port) || port > 65535) throw new Error(`Invalid TCP port: ${portText}`);
  return { host, port };
}

export function parseMigrationUrl(url: string): MigrationUrl {
  if (url.startsWith('tcp:')) return { kind: 'tcp', ...parseTcp(url.slice('tcp:'.length)) };
  if (url.startsWith('unix:') && url.length > 'unix:'.length) return { kind: 'unix', path: url.slice('unix:'.length) };
  throw new Error('destination_url must use tcp:<host>:<port> or unix:<path>.');
}

/** Reads newline-terminated JSON messages from a socket, each capped at MESSAGE_MAX. */
export class MessageReader {
  private buffered = Buffer.alloc(0);
  private waiting: { resolve: (m: JsonObject) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private readonly queue: JsonObject[] = [];

  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.fail(new Error('Failed to read migration request: the peer closed the connection (unexpected end of file)')));
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('the migration connection closed')));
    // An accepted connection waits paused (pauseOnConnect) until its reader listens.
    socket.resume();
  }

  private onData(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    for (let nl = this.buffered.indexOf(0x0a); nl >= 0; nl = this.buffered.indexOf(0x0a)) {
      const line = this.buffered.subarray(0, nl).toString('utf8');
      this.buffered = this.buffered.subarray(nl + 1);
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        return this.fail(new Error('Invalid migration message: not JSON'));
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || (parsed as JsonObject).mark !== STREAM_MARK) {
        return this.fail(new Error('Invalid migration message: not from a cloud-hypervisor contract double'));
      }
      this.queue.push(parsed as JsonObject);
    }
    if (this.buffered.length > MESSAGE_MAX) this.fail(new Error(`Invalid migration message: over ${MESSAGE_MAX} bytes`));
    this.deliver();
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.socket.destroy();
    this.deliver();
  }

  private deliver(): void {
    const w = this.waiting;
    if (!w) return;
    const next = this.queue.shift();
    if (next) {
      this.waiting = undefined;
      w.resolve(next);
    } else if (this.failure) {
      this.waiting = undefined;
      w.reject(this.failure);
    }
  }

  next(): Promise<JsonObject> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.deliver();
    });
  }
}

export function send(socket: Socket, message: JsonObject): void {
  socket.write(`${JSON.stringify({ mark: STREAM_MARK, ...message })}\n`);
}

/** receive_migration_listener: binds (a unix path that exists is an error, as UnixListener::bind makes it). */
export function listenFor(url: MigrationUrl): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer({ pauseOnConnect: true });
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve(server);
    };
    if (url.kind === 'unix') server.listen(url.path, done);
    else server.listen(url.port, url.host, done);
  });
}

/** The one connection a receiver takes; the listener then closes (node unlinks a unix listener's path on close). */
export function acceptOne(server: Server): Promise<Socket> {
  return new Promise((resolve) => {
    server.once('connection', (socket: Socket) => {
      server.close();
      resolve(socket);
    });
  });
}

/** send_migration_socket: connects, or fails with the connection's error. */
export function connectTo(url: MigrationUrl): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = url.kind === 'unix' ? connect(url.path) : connect(url.port, url.host);
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}
