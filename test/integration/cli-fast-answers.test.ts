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

let state: string;
let server: Server;
let reply: Reply = () => undefined;

beforeAll(async () => {
  await ensureCliBuilt();
  const base = await tempDir('hvplug-fast-answers-');
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
});
