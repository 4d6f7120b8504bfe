// Live migration of a simulated guest: its whole state is the counter it prints next (and its size and devices),
// so the stream is one JSON line, answered by one line. The destination listens for exactly one sender.
import type { Server, Socket } from 'node:net';
// A namespace import lets esbuild keep only the zod a plugin uses.
import * as z from 'zod/mini';
import { errors } from 'hvplug/plugin-sdk';
import { Device } from 'hvplug/protocol';
import { net } from './builtins.js';

export const MIGRATION_FORMAT = 'hvplug-example/migration';
/** Cap of one line of the stream (either way): the guest's state is a few hundred bytes, devices included. */
export const MAX_MIGRATION_LINE_BYTES = 256 * 1024;
/** How long the source waits for the destination to connect, take the state and answer. */
export const MIGRATION_ANSWER_MS = 30_000;

export const MigrationStream = z.object({
  format: z.literal(MIGRATION_FORMAT),
  vmId: z.string(),
  nextTick: z.int().check(z.nonnegative()),
  vcpus: z.int().check(z.positive()),
  memoryMiB: z.int().check(z.positive()),
  devices: z.array(Device),
});
export type MigrationStream = z.output<typeof MigrationStream>;

const Answer = z.union([z.object({ ok: z.literal(true) }), z.object({ ok: z.literal(false), error: z.string().check(z.maxLength(4096)) })]);

/** Reads one newline-ended line of at most MAX_MIGRATION_LINE_BYTES; rejects on a longer one, an early end or an error. */
function readLine(socket: Socket, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err: Error | undefined, line?: string): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      if (err) reject(err);
      else resolve(line ?? '');
    };
    const onData = (chunk: Buffer): void => {
      const nl = chunk.indexOf(0x0a);
      const part = nl < 0 ? chunk : chunk.subarray(0, nl);
      size += part.length;
      if (size > MAX_MIGRATION_LINE_BYTES) return done(new Error(`migration line longer than ${MAX_MIGRATION_LINE_BYTES} bytes`));
      chunks.push(part);
      if (nl >= 0) done(undefined, Buffer.concat(chunks).toString('utf8'));
    };
    const onEnd = (): void => done(new Error('the peer closed the migration stream early'));
    const onError = (err: Error): void => done(err);
    const timer = setTimeout(() => done(new Error(`no migration line within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
  });
}

function parseJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

/**
 * Listens for one incoming migration. `accept` brings the guest up from what came in; its failure is told to the
 * sender, which then keeps its guest. Listening ends with the first stream that was accepted, or at close().
 */
export class IncomingMigration {
  private accepted = false;

  private constructor(
    private readonly server: Server,
    readonly uri: string,
  ) {}

  static async listen(where: { address: string } | { path: string }, accept: (stream: MigrationStream) => Promise<void>): Promise<IncomingMigration> {
    const server = net().createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if ('path' in where) server.listen(where.path, resolve);
      else server.listen(0, where.address, resolve);
    });
    const bound = server.address();
    let uri: string;
    if ('path' in where) uri = `unix:${where.path}`;
    else if (bound !== null && typeof bound === 'object') uri = `tcp:${where.address.includes(':') ? `[${where.address}]` : where.address}:${bound.port}`;
    else throw errors.vmmFailure('the migration listener has no port');
    const incoming = new IncomingMigration(server, uri);
    server.on('connection', (socket) => void incoming.serve(socket, accept));
    // A listener error after listening (none expected) must not throw out of an event handler.
    server.on('error', () => undefined);
    return incoming;
  }

  private async serve(socket: Socket, accept: (stream: MigrationStream) => Promise<void>): Promise<void> {
    socket.on('error', () => undefined);
    const answer = (a: z.input<typeof Answer>): void => {
      socket.end(`${JSON.stringify(a)}\n`);
    };
    if (this.accepted) return answer({ ok: false, error: 'this VM has received its migration already' });
    let stream: MigrationStream;
    try {
      const parsed = MigrationStream.safeParse(parseJson(await readLine(socket, MIGRATION_ANSWER_MS)));
      if (!parsed.success) return answer({ ok: false, error: `not a migration stream of this plugin: ${parsed.error.message.slice(0, 1000)}` });
      stream = parsed.data;
    } catch (err) {
      return answer({ ok: false, error: (err as Error).message });
    }
    this.accepted = true;
    try {
      await accept(stream);
    } catch (err) {
      this.accepted = false;
      return answer({ ok: false, error: (err as Error).message });
    }
    answer({ ok: true });
    this.close();
  }

  private closed = false;

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
  }
}

/** Sends the guest's state to `uri` and waits for the destination's answer: resolves once the guest runs there. */
export async function sendMigration(uri: string, stream: MigrationStream, signal: AbortSignal): Promise<number> {
  const socket = uri.startsWith('unix:') ? net().createConnection(uri.slice('unix:'.length)) : connectTcp(uri);
  const onAbort = (): void => void socket.destroy(new Error('cancelled'));
  signal.addEventListener('abort', onAbort);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const body = `${JSON.stringify(stream)}\n`;
    socket.write(body);
    const parsed = Answer.safeParse(parseJson(await readLine(socket, MIGRATION_ANSWER_MS)));
    if (!parsed.success) throw errors.vmmFailure('the destination answered the migration with something that is not an answer');
    if (!parsed.data.ok) throw errors.vmmFailure(`the destination refused the migration: ${parsed.data.error}`);
    return Buffer.byteLength(body);
  } finally {
    signal.removeEventListener('abort', onAbort);
    socket.destroy();
  }
}

function connectTcp(uri: string): Socket {
  const m = /^tcp:(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(uri);
  if (!m) throw errors.invalidParams('vm/migrate', [{ path: ['uri'], message: `${uri} is not tcp:<host>:<port>` }]);
  return net().createConnection({ host: m[1] ?? m[2], port: Number(m[3]) });
}
