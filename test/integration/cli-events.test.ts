import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder } from 'hvplug/transport';
import { EventFeed } from '../../src/daemon/events.js';
import { alive, CLI, ensureCliBuilt, eventually, removeTempDirs, tempDir } from '../helpers.js';

/**
 * `hvplug events` through the built CLI against a real daemon: the stream reader, the VMs and every command changing them
 * are processes of their own. The daemon's cap on what a slow reader may leave unread is shown on a real socket.
 */
const PLUGIN = 'example-proprietary';

interface Dirs {
  state: string;
  run: string;
}

type Child = ResultPromise<{ reject: false; buffer: true }>;

interface EventLine {
  type: string;
  vmId: string;
  name?: string;
  plugin: string;
  seq: number;
  time: string;
}

const guests = new Set<number>();
const children = new Set<Child>();

beforeAll(async () => {
  await ensureCliBuilt();
}, 120_000);

afterEach(async () => {
  for (const c of children) {
    c.kill('SIGTERM');
    await c;
  }
  children.clear();
});

afterAll(async () => {
  for (const pid of guests) {
    try {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  await removeTempDirs();
});

async function dirs(): Promise<Dirs> {
  return { state: await tempDir('hvplug-events-state-'), run: await tempDir('hvplug-events-run-') };
}

function spawn(d: Dirs, args: readonly string[]): Child {
  const child = execa('node', [CLI, '--state-dir', d.state, '--runtime-dir', d.run, ...args], { reject: false, buffer: true, env: { HVPLUG_CONFIG: '' } });
  children.add(child);
  return child;
}

async function cli(d: Dirs, args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa('node', [CLI, '--state-dir', d.state, '--runtime-dir', d.run, ...args], { reject: false, timeout: 60_000, env: { HVPLUG_CONFIG: '' } });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function ok(d: Dirs, args: readonly string[]): Promise<string> {
  const r = await cli(d, args);
  expect(r.exitCode, `hvplug ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** Started and left to afterEach; the child itself is not returned, as an awaited execa child waits for its exit. */
async function startDaemon(d: Dirs): Promise<{ child: Child }> {
  const child = spawn(d, ['daemon']);
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  await eventually(() => out.includes('ready') || child.exitCode !== null, 30_000, 'the daemon to be ready');
  expect(out).toContain('ready');
  return { child };
}

async function detached(d: Dirs, name: string): Promise<string> {
  const id = (await ok(d, ['run', '--detach', '--plugin', PLUGIN, '--name', name])).trim();
  const info = JSON.parse(await ok(d, ['info', name, '--json'])) as { pid?: number };
  if (info.pid !== undefined) guests.add(info.pid);
  return id;
}

/** A running `hvplug events`, its stdout read as JSON lines as they come. */
function watch(d: Dirs, args: readonly string[]): { child: Child; lines: () => EventLine[]; err: () => string; raw: () => string } {
  const child = spawn(d, ['events', ...args]);
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  return {
    child,
    lines: () =>
      out
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as EventLine),
    err: () => err,
    raw: () => out + err,
  };
}

const typesOf = (lines: EventLine[], vmId: string): string[] => lines.filter((l) => l.vmId === vmId).map((l) => l.type);

/**
 * Waits until the stream is subscribed: an event of a throw-away VM made for the purpose has come through. A stream
 * that subscribed after the VM's first events (a loaded machine starts it slowly) gets a pause and a resume of it.
 */
async function subscribed(d: Dirs, stream: { lines: () => EventLine[]; raw: () => string }, probe: string): Promise<void> {
  const id = await detached(d, probe);
  const seen = (): boolean => stream.lines().some((l) => l.vmId === id);
  const deadline = Date.now() + 60_000;
  while (!seen()) {
    if (Date.now() > deadline) throw new Error(`the stream never saw the probe VM in 60 s; it said: ${JSON.stringify(stream.raw())}`);
    await eventually(seen, 3_000, 'the probe VM').catch(async () => {
      await ok(d, ['pause', probe]);
      await ok(d, ['resume', probe]);
    });
  }
  await ok(d, ['rm', '--force', probe]);
}

describe('hvplug events', () => {
  it('needs the daemon, and says so', async () => {
    const d = await dirs();
    const r = await cli(d, ['events']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('hvplug events needs a running daemon (hvplug daemon)');
  }, 60_000);

  it('streams the events of pause and resume done by other processes, as JSON lines, filtered by VM when named', async () => {
    const d = await dirs();
    await startDaemon(d);
    const a = await detached(d, 'alpha');
    const b = await detached(d, 'beta');

    // Piped: JSON without asking. The filtered stream names its VM by name and by id prefix.
    const all = watch(d, []);
    const onlyA = watch(d, ['alpha', '--json']);
    const both = watch(d, ['alpha', b.slice(0, 8)]);
    await subscribed(d, all, 'probe');
    // The others subscribed before `all` saw the probe? Not necessarily: give them an event of their own VM first.
    await ok(d, ['pause', 'alpha']);
    await eventually(() => typesOf(onlyA.lines(), a).includes('paused') && typesOf(both.lines(), a).includes('paused'), 20_000, 'the pause in every stream');
    await ok(d, ['resume', 'alpha']);
    await ok(d, ['pause', 'beta']);
    await ok(d, ['resume', 'beta']);
    await eventually(() => typesOf(all.lines(), b).includes('resumed') && typesOf(both.lines(), b).includes('resumed'), 20_000, 'beta resumed in the streams');

    expect(typesOf(all.lines(), a)).toEqual(['paused', 'resumed']);
    expect(typesOf(all.lines(), b)).toEqual(['paused', 'resumed']);
    const paused = all.lines().find((l) => l.vmId === a && l.type === 'paused');
    expect(paused).toMatchObject({ plugin: PLUGIN, name: 'alpha', seq: expect.any(Number), time: expect.any(String) });
    expect(typesOf(onlyA.lines(), a)).toEqual(['paused', 'resumed']);
    expect(onlyA.lines().every((l) => l.vmId === a)).toBe(true);
    expect(both.lines().every((l) => l.vmId === a || l.vmId === b)).toBe(true);

    // A VM's whole life in the unfiltered stream, from another process's run --detach to its stop.
    const c = await detached(d, 'gamma');
    await ok(d, ['stop', 'gamma']);
    await eventually(() => typesOf(all.lines(), c).includes('deleted'), 20_000, 'gamma deleted in the stream');
    expect(typesOf(all.lines(), c)).toEqual(['created', 'running', 'exited', 'stopped', 'deleted']);
    expect(all.lines().find((l) => l.vmId === c && l.type === 'deleted')).toMatchObject({ plugin: PLUGIN, name: 'gamma', time: expect.any(String) });
    expect(typesOf(onlyA.lines(), c)).toEqual([]);
    // rm of a VM killed by another process: its removal is an event too, the last of its life.
    const e = await detached(d, 'delta');
    await ok(d, ['kill', 'delta']);
    await ok(d, ['rm', 'delta']);
    await eventually(() => typesOf(all.lines(), e).includes('deleted'), 20_000, 'delta deleted in the stream');
    expect(typesOf(all.lines(), e).at(-1)).toBe('deleted');

    for (const w of [all, onlyA, both]) {
      w.child.kill('SIGTERM');
      const r = await w.child;
      expect(r.exitCode, w.err()).toBe(0);
    }
    await ok(d, ['rm', '--force', 'alpha']);
    await ok(d, ['rm', '--force', 'beta']);
  }, 180_000);

  it('fails on a VM it cannot find, and ends with status 1 when the daemon goes away', async () => {
    const d = await dirs();
    const daemon = await startDaemon(d);
    const none = await cli(d, ['events', 'nobody']);
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toContain('no VM "nobody"');

    const stream = watch(d, []);
    await subscribed(d, stream, 'probe');
    daemon.child.kill('SIGTERM');
    await daemon.child;
    const r = await stream.child;
    expect(r.exitCode).toBe(1);
    expect(stream.err()).toMatch(/the hvplug daemon \(pid \d+\) went away; no more events/);
  }, 120_000);
});

describe('the daemon event feed of a slow reader', () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  it('holds at most its cap for a reader that does not read, drops the rest, and tells the count once the reader catches up', async () => {
    const path = join(await tempDir('hvplug-feed-'), 'feed.sock');
    const accepted = new Promise<Socket>((resolve) => {
      server = createServer((s) => resolve(s));
      server.listen(path);
    });
    await new Promise<void>((resolve) => server!.once('listening', () => resolve()));
    const reader = connect(path);
    reader.pause();
    const socket = await accepted;
    const cap = 64 * 1024;
    const feed = new EventFeed(socket, (method, params) => socket.write(encodeFrame(JSON.stringify({ jsonrpc: '2.0', method, params }))), undefined, cap);

    const total = 20_000;
    let most = 0;
    for (let seq = 0; seq < total; seq++) {
      feed.push({ plugin: 'p', event: { vmId: 'vm-1', seq, time: new Date(0).toISOString(), type: 'paused' } });
      most = Math.max(most, socket.writableLength);
    }
    // The cap and one event: never the 20 000 events' worth (over 2 MB) the reader left unread.
    expect(most).toBeLessThan(cap + 1024);

    const decoder = new FrameDecoder();
    const got: { method: string; params: { count?: number; event?: { seq: number } } }[] = [];
    reader.on('data', (c: Buffer) => {
      for (const body of decoder.push(c)) got.push(JSON.parse(body.toString('utf8')) as (typeof got)[number]);
    });
    reader.resume();
    await eventually(() => got.at(-1)?.method === 'hvplug/eventsDropped', 10_000, 'the dropped notice');
    const events = got.filter((m) => m.method === 'hvplug/event');
    const dropped = got.at(-1)!.params.count!;
    expect(events.length).toBeGreaterThan(0);
    expect(events.length + dropped).toBe(total);
    // What came is a run from the start, in order: the feed drops the newest, never reorders.
    expect(events.map((m) => m.params.event!.seq)).toEqual(events.map((_, i) => i));

    // Caught up: events flow again.
    feed.push({ plugin: 'p', event: { vmId: 'vm-1', seq: total, time: new Date(0).toISOString(), type: 'resumed' } });
    await eventually(() => got.at(-1)?.params.event?.seq === total, 10_000, 'the next event');
    reader.destroy();
    socket.destroy();
  });
});
