import { spawn } from 'node:child_process';
import { closeSync, constants, openSync, readSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder } from 'hvplug/transport';
import { root } from '../../scripts/bundle.mjs';
import { writeDaemonLock } from '../daemon-helpers.js';
import { ensureCliBuilt, removeTempDirs, tempDir } from '../helpers.js';

/**
 * The fast path's rarer ends, run from its startup snapshot through the installed launcher (dist/cli/hvplug): a daemon
 * that hangs up, or answers hvplug/callRef with what no daemon of ours sends. A real daemon cannot be made to answer
 * so; this one speaks the real framing from daemon.json as a daemon writes it. While the snapshot is built only the
 * common path runs (warmFast), so each of these compiles its functions for the first time here: each must end as the
 * CLI ends an error (exit 1, a message on stderr), never in a crash of the snapshot.
 */
const LAUNCHER = join(root, 'dist/cli/hvplug');
const VM = '6f1c8a52-3d4e-4b7a-9c2d-0e5f6a7b8c9d';

type Reply = (id: number | string, conn: Socket) => void;

let base: string;
let state: string;
let server: Server;
let reply: Reply = () => undefined;

beforeAll(async () => {
  await ensureCliBuilt();
  base = await tempDir('hvplug-fast-answers-');
  state = join(base, 'state');
  const socket = join(base, 'daemon.sock');
  await mkdir(state);
  server = createServer((conn) => {
    const decoder = new FrameDecoder();
    conn.on('error', () => undefined);
    conn.on('data', (chunk: Buffer) => {
      for (const body of decoder.push(chunk)) {
        const msg = JSON.parse(body.toString('utf8')) as { id?: number | string };
        if (msg.id !== undefined) reply(msg.id, conn);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  await writeDaemonLock(state, socket, 'fast-answers');
}, 120_000);

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await removeTempDirs();
});

const answer = (id: number | string, body: object, conn: Socket): void => {
  conn.write(encodeFrame(JSON.stringify({ jsonrpc: '2.0', id, ...body })));
};

async function pause(): Promise<{ code: number | undefined; signal: string | undefined; out: string; err: string }> {
  const r = await execa(LAUNCHER, ['--state-dir', state, 'pause', VM], { reject: false, timeout: 30_000, env: { HVPLUG_CONFIG: '' } });
  return { code: r.exitCode, signal: r.signal, out: r.stdout, err: r.stderr };
}

describe('the fast path from its snapshot, on answers no daemon of ours gives', () => {
  it('a daemon that hangs up: exit 1, naming the daemon and the call', async () => {
    reply = (_id, conn) => conn.destroy();
    expect(await pause()).toEqual({
      code: 1,
      signal: undefined,
      out: '',
      err: `hvplug: the hvplug daemon (pid ${process.pid}) closed the connection; vm/pause got no answer`,
    });
  });

  it('a result that is not callRef\'s, and a call result that is not a VmResult: exit 1, saying which', async () => {
    reply = (id, conn) => answer(id, { result: { nothing: true } }, conn);
    expect(await pause()).toEqual({
      code: 1,
      signal: undefined,
      out: '',
      err: `hvplug: the hvplug daemon (pid ${process.pid}) answered hvplug/callRef with a malformed result`,
    });
    reply = (id, conn) => answer(id, { result: { vmId: VM, result: { status: 'sideways' } } }, conn);
    const bad = await pause();
    expect(bad).toMatchObject({ code: 1, signal: undefined, out: '' });
    expect(bad.err).toMatch(/^hvplug: plugin answered vm\/pause with a malformed result: status: /);
  });

  it('an error with and without hvplug\'s data: exit 1 with its message', async () => {
    reply = (id, conn) => answer(id, { error: { code: -32603, message: 'it broke' } }, conn);
    const internal = await pause();
    expect(internal).toMatchObject({ code: 1, signal: undefined, out: '' });
    expect(internal.err).toContain('it broke');
    reply = (id, conn) => answer(id, { error: { code: -31003, message: 'not now', data: { hvplug: 'InvalidState' } } }, conn);
    const refused = await pause();
    expect(refused).toMatchObject({ code: 1, signal: undefined, out: '' });
    expect(refused.err).toContain('not now');
  });

  it('a valid answer after all that: the VM id, exit 0', async () => {
    reply = (id, conn) => answer(id, { result: { vmId: VM, result: { status: 'paused' } } }, conn);
    expect(await pause()).toEqual({ code: 0, signal: undefined, out: VM, err: '' });
  });

  it('a standard output found full and non-blocking: the VM id waits for its reader, then exit 0', async () => {
    // A FIFO opened non-blocking and filled: the fast path's write(2) of its line meets EAGAIN, hands the rest to
    // process.stdout, and must not exit (exitFast) before that has gone out.
    const fifo = join(base, 'full-stdout');
    await execa('mkfifo', [fifo]);
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      const filler = Buffer.alloc(4096, 0x2e);
      let filled = 0;
      for (;;) {
        try {
          filled += writeSync(fd, filler);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
          throw err;
        }
      }
      let answered!: () => void;
      const asked = new Promise<void>((r) => (answered = r));
      reply = (id, conn) => {
        answer(id, { result: { vmId: VM, result: { status: 'paused' } } }, conn);
        answered();
      };
      // Handed over as fd 3 and moved to 1 by the shell: node's spawn makes a child's fds 0-2 blocking (on the open file
      // description this test shares), a shell's redirection keeps it as it is.
      const child = spawn('sh', ['-c', 'exec "$0" "$@" >&3 3>&-', LAUNCHER, '--state-dir', state, 'pause', VM], {
        stdio: ['ignore', 'ignore', 'pipe', fd],
        env: { ...process.env, HVPLUG_CONFIG: '' },
      });
      let err = '';
      child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      // Asked by the fast path, or it ended before it asked (then it says why on stderr).
      const early = await Promise.race([asked.then(() => undefined), exited.then((c) => ({ code: c, err }))]);
      expect(early).toBeUndefined();
      // Time for its write to meet the full pipe before a byte is read.
      await new Promise((r) => setTimeout(r, 300));
      const chunks: Buffer[] = [];
      let code: number | null | undefined;
      void exited.then((c) => (code = c));
      const buf = Buffer.alloc(65536);
      for (const deadline = Date.now() + 20_000; Date.now() < deadline; ) {
        let n = 0;
        try {
          n = readSync(fd, buf);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        }
        if (n > 0) chunks.push(Buffer.from(buf.subarray(0, n)));
        else if (code !== undefined) break;
        else await new Promise((r) => setTimeout(r, 10));
      }
      const out = Buffer.concat(chunks);
      expect({ code, err }).toEqual({ code: 0, err: '' });
      expect(out.length).toBe(filled + VM.length + 1);
      expect(out.subarray(filled).toString()).toBe(`${VM}\n`);
    } finally {
      closeSync(fd);
    }
  });
});
