import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { DETACH_BYTE, joinConsole } from '../../src/cli/console.js';

/** A console socket served by this process (as a VMM serves it), and a client joined to stand-in terminal streams. */
async function session(): Promise<{ peer: Socket; got: () => string; peerEnded: Promise<void>; input: PassThrough; output: PassThrough; shown: () => string; end: ReturnType<typeof joinConsole> }> {
  const dir = await mkdtemp(join(tmpdir(), 'hvplug-console-join-'));
  dirs.push(dir);
  const path = join(dir, 'console.sock');
  const server: Server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const client = createConnection(path);
  await new Promise<void>((resolve) => client.once('connect', resolve));
  const peer = await accepted;
  let received = '';
  peer.on('data', (b: Buffer) => (received += b.toString('latin1')));
  const peerEnded = new Promise<void>((resolve) => peer.once('end', resolve));
  const input = new PassThrough();
  const output = new PassThrough();
  let shown = '';
  output.on('data', (b: Buffer) => (shown += b.toString('latin1')));
  const end = joinConsole(client, input as unknown as NodeJS.ReadStream, output as unknown as NodeJS.WriteStream);
  return { peer, got: () => received, peerEnded, input, output, shown: () => shown, end };
}

const servers: Server[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) s.close();
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('joinConsole', () => {
  it('passes keys to the console and the guest bytes to the terminal unchanged; Ctrl-] sends what came before it and leaves', async () => {
    const s = await session();
    s.peer.write('\x1b[1;31mguest\r\n');
    s.input.write('ls\r');
    s.input.write(Buffer.concat([Buffer.from('echo hi'), Buffer.from([DETACH_BYTE]), Buffer.from('after')]));
    expect(await s.end).toBe('detached');
    await s.peerEnded;
    expect(s.got()).toBe('ls\recho hi');
    expect(s.shown()).toBe('\x1b[1;31mguest\r\n');
  });

  it('ends when the VMM closes the console', async () => {
    const s = await session();
    s.peer.end('bye\r\n');
    expect(await s.end).toBe('closed');
    expect(s.shown()).toBe('bye\r\n');
  });

  it('ends when its input ends, after passing it on; the VMM sees its client leave', async () => {
    const s = await session();
    s.input.end('uptime\n');
    expect(await s.end).toBe('input-ended');
    await s.peerEnded;
    expect(s.got()).toBe('uptime\n');
  });
});
