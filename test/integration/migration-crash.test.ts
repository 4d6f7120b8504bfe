import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileStateStore, PluginHost, type VmRecord } from 'hvplug';
import { proc } from 'hvplug/plugin-sdk';
import { root } from '../../scripts/bundle.mjs';
import { alive, eventually, EXAMPLE_GUEST_TITLE, onJsonLines, pluginExecutable, processesUnder, removeTempDirs, tempDir } from '../helpers.js';

/**
 * A live migration whose source or destination host dies (SIGKILL) at a step of the record hand-off
 * (docs/migration.md). Each host runs in a process of its own (test/fixtures/hosts/migration-host.mjs) with its own
 * state directory and example plugin process; the source's PluginHost.migrate reaches the destination's
 * prepareIncoming/commitIncoming/abortIncoming through this test, which relays each call and its answer, and so
 * kills a host exactly between two steps. Then fresh hosts on both state directories re-attach and settle it with
 * resolveMigration, and the test checks the ownership rule held: one record, unmarked, on the host whose guest runs;
 * one guest process left, answering, its counter carried on; no plugin or guest process left once it is deleted.
 */
const CORE = new URL('../../dist/src/core/index.js', import.meta.url).href;
const FIXTURE = join(root, 'test/fixtures/hosts/migration-host.mjs');
const PLUGIN = 'example-proprietary';
/** How long a step of a host process may take on a loaded machine. */
const STEP_MS = 20_000;

type Side = 'source' | 'destination';
/**
 * Where the victim dies. marked: the source's mark is on disk, the destination not asked yet. incoming-recorded:
 * the destination's marked record is on disk, its plugin not told (held before vm/receiveMigration). prepared: the
 * destination's plugin listens, its answer not passed on. stopping: vm/migrate in flight, its first $/progress
 * (before the guest's state is sent). streamed: vm/migrate in flight, the destination's guest started from the
 * stream. sent: the source plugin answered vm/migrate, the destination not told to commit. committed: the
 * destination's commit is on disk, the source not told.
 */
type Step = 'marked' | 'incoming-recorded' | 'prepared' | 'stopping' | 'streamed' | 'sent' | 'committed';

interface Line {
  id?: number;
  ok?: boolean;
  result?: Record<string, unknown>;
  error?: { name: string; message: string };
  event?: string;
  forward?: number;
  call?: string;
  args?: Record<string, unknown>;
  pid?: number;
  message?: string;
}

const children: HostProcess[] = [];
const hosts: PluginHost[] = [];
/** Every plugin process started by a host of this file, in a child process or here. */
const pluginPids: number[] = [];

/** A host process (the fixture), driven over its stdin and stdout. */
class HostProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  private readonly queue: Line[] = [];
  /** Who waits for the next line (next() may be waited on by several callers at once). */
  private readonly wakers = new Set<() => void>();
  private nextId = 1;
  private stderr = '';
  private gone = false;
  /** Its plugin processes. */
  readonly plugins: number[] = [];

  constructor(
    readonly side: Side,
    opts: Record<string, unknown>,
  ) {
    this.child = spawn(process.execPath, [FIXTURE, JSON.stringify({ core: CORE, plugin: { name: PLUGIN, command: pluginExecutable(PLUGIN) }, ...opts })], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.push(this);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', () => {
        this.gone = true;
        for (const w of this.wakers) w();
        resolve();
      }),
    );
    this.child.stderr?.on('data', (c: Buffer) => (this.stderr = (this.stderr + c.toString()).slice(-4000)));
    // A write to a host that was just killed fails with EPIPE: nothing to report, the test knows it killed it.
    this.child.stdin?.on('error', () => undefined);
    onJsonLines<Line>(this.child.stdout!, (line) => {
      if (line.event === 'plugin-started' && line.pid !== undefined) {
        pluginPids.push(line.pid);
        this.plugins.push(line.pid);
      } else this.queue.push(line);
      for (const w of this.wakers) w();
    });
  }

  /** Takes the first line, seen or to come, that matches; fails if the process exits first. */
  async next(match: (l: Line) => boolean, what: string): Promise<Line> {
    const deadline = Date.now() + STEP_MS;
    for (;;) {
      const i = this.queue.findIndex(match);
      if (i >= 0) return this.queue.splice(i, 1)[0]!;
      if (this.gone) throw new Error(`the ${this.side} host exited before ${what}: ${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the ${this.side} host sent no ${what} within ${STEP_MS} ms`);
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.wakers.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.wakers.add(wake);
      });
    }
  }

  send(msg: Record<string, unknown>): void {
    this.child.stdin?.write(`${JSON.stringify(msg)}\n`);
  }

  /** Sends a command; the id its answer will carry. */
  command(op: string, args: Record<string, unknown> = {}): number {
    const id = this.nextId++;
    this.send({ id, op, ...args });
    return id;
  }

  /** Sends a command; its answer line. */
  request(op: string, args: Record<string, unknown> = {}): Promise<Line> {
    const id = this.command(op, args);
    return this.next((l) => l.id === id, `an answer to ${op}`);
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Closes the host (its plugin goes, its VMs run on) and waits for the process to end. */
  async close(): Promise<void> {
    if (this.gone) return;
    const answer = await this.request('close');
    expect(answer.ok, JSON.stringify(answer.error)).toBe(true);
    await this.exited;
  }
}

interface Place {
  stateDir: string;
  runtimeDir: string;
  identity: string;
}

function place(dir: string, name: string): Place {
  const stateDir = join(dir, name, 'state');
  return { stateDir, runtimeDir: join(dir, name, 'run'), identity: `${hostname()}:${stateDir}` };
}

async function recordsAt(p: Place): Promise<VmRecord[]> {
  const { records, errors } = await new FileStateStore(p.stateDir).list();
  expect(errors).toEqual([]);
  return records;
}

/** The counter values on a console, in order. */
async function ticks(path: string): Promise<number[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return [...text.matchAll(/^tick (\d+)$/gm)].map((m) => Number(m[1]));
}

/** The example plugin's guest processes (their command line names the guest program) under some directories. */
const guestsUnder = (dirs: readonly string[]): number[] => processesUnder(dirs).filter((pid) => proc.cmdline(pid)?.join(' ').includes(EXAMPLE_GUEST_TITLE));

const consecutive = (xs: number[]): boolean => xs.every((x, i) => i === 0 || x === (xs[i - 1] as number) + 1);

function freshHost(p: Place): PluginHost {
  const host = new PluginHost({
    stateDir: p.stateDir,
    runtimeDir: p.runtimeDir,
    logLevel: 'silent',
    plugins: [{ name: PLUGIN, command: pluginExecutable(PLUGIN) }],
    supervision: { healthIntervalMs: 0 },
  });
  host.on('plugin-started', ({ pid }) => pid !== undefined && pluginPids.push(pid));
  hosts.push(host);
  return host;
}

/** The directories of the running case: a case that fails leaves guests there, ended in afterEach. */
const dirs: string[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) await c.kill();
  for (const h of hosts.splice(0)) await h.close();
  for (const pid of guestsUnder(dirs.splice(0))) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  await removeTempDirs();
});

/**
 * Runs the hand-off between the two host processes, relaying the source's calls to the destination, and kills the
 * victim at the step. The source's migrate answer when the source survived.
 */
async function handOff(src: HostProcess, dst: HostProcess, vmId: string, at: Place[], victim: Side, step: Step): Promise<Line | undefined> {
  const [a, b] = at as [Place, Place];
  let dstDead = false;
  const kill = async (): Promise<void> => {
    if (victim === 'source') return src.kill();
    await dst.kill();
    dstDead = true;
  };
  const migrating = src.command('migrate', { vmId });
  /** Passes a forwarded call on to the destination and its answer back; a dead destination answers nothing. */
  const relay = async (f: Line): Promise<void> => {
    if (dstDead) return src.send({ reply: f.forward, ok: false, error: { name: 'Error', message: 'the destination host is gone (connection lost)' } });
    const answer = await dst.request(f.call!, f.args);
    src.send({ reply: f.forward, ok: answer.ok, result: answer.result, error: answer.error });
  };
  const forwarded = (call: string): Promise<Line> =>
    src.next((l) => l.forward !== undefined, `a forwarded ${call}`).then((f) => {
      expect(f.call).toBe(call);
      return f;
    });
  /** After a destination death: the source's last calls are refused until its migrate answers. */
  const settle = async (): Promise<Line> => {
    for (;;) {
      const l = await src.next((x) => x.forward !== undefined || x.id === migrating, 'its migrate answer');
      if (l.id === undefined) await relay(l);
      else return l;
    }
  };
  const done = async (): Promise<Line | undefined> => (victim === 'source' ? undefined : settle());

  const prepare = await forwarded('prepareIncoming');
  expect((await recordsAt(a)).map((r) => r.migration?.role)).toEqual(['outgoing']);
  if (step === 'marked') {
    await kill();
    if (victim === 'destination') await relay(prepare);
    return done();
  }
  const preparing = dst.request('prepareIncoming', prepare.args);
  if (step === 'incoming-recorded') {
    await dst.next((l) => l.event === 'held', 'the held vm/receiveMigration');
    expect((await recordsAt(b)).map((r) => r.migration?.role)).toEqual(['incoming']);
    await kill();
    if (victim === 'source') {
      dst.command('release');
      expect((await preparing).ok).toBe(true);
      return undefined;
    }
    // The killed destination never answers it.
    await preparing.catch(() => undefined);
    await relay(prepare);
    return done();
  }
  const prepared = await preparing;
  expect(prepared.ok, JSON.stringify(prepared.error)).toBe(true);
  if (step === 'prepared') {
    await kill();
    if (victim === 'source') return undefined;
    // Its answer had left before it died: the source plugin sends to a listener that went with the destination's plugin.
    await eventually(() => !dst.plugins.some(alive), STEP_MS, "the destination's plugin to end with its host");
  }
  src.send({ reply: prepare.forward, ok: prepared.ok, result: prepared.result, error: prepared.error });
  if (step === 'prepared') return done();
  if (step === 'stopping') {
    await src.next((l) => l.event === 'progress', 'the first $/progress of vm/migrate');
    await kill();
    return done();
  }
  if (step === 'streamed') {
    await eventually(() => guestsUnder([b.runtimeDir]).length > 0, STEP_MS, "the destination's guest");
    await kill();
    return done();
  }
  const commit = await forwarded('commitIncoming');
  if (step === 'sent') {
    await kill();
    if (victim === 'destination') await relay(commit);
    return done();
  }
  const committed = await dst.request('commitIncoming', commit.args);
  expect(committed.ok, JSON.stringify(committed.error)).toBe(true);
  expect((await recordsAt(b)).map((r) => [r.status, r.migration])).toEqual([['running', undefined]]);
  await kill();
  if (victim === 'destination') await relay(commit);
  return done();
}

interface Case {
  victim: Side;
  step: Step;
  /** Who runs the VM once settled; both when the plugins' own race decides it. */
  owner: Side | 'either';
  /** What the surviving source's migrate answers: a definite failure (the VM stayed) or undecided. */
  answer?: 'failed' | 'undecided' | 'either';
}

const cases: Case[] = [
  { victim: 'source', step: 'marked', owner: 'source' },
  { victim: 'destination', step: 'marked', owner: 'source', answer: 'failed' },
  { victim: 'source', step: 'incoming-recorded', owner: 'source' },
  { victim: 'destination', step: 'incoming-recorded', owner: 'source', answer: 'failed' },
  { victim: 'source', step: 'prepared', owner: 'source' },
  { victim: 'destination', step: 'prepared', owner: 'source', answer: 'failed' },
  { victim: 'source', step: 'stopping', owner: 'either' },
  { victim: 'source', step: 'streamed', owner: 'destination' },
  { victim: 'destination', step: 'streamed', owner: 'either', answer: 'either' },
  { victim: 'source', step: 'sent', owner: 'destination' },
  { victim: 'destination', step: 'sent', owner: 'destination', answer: 'undecided' },
  { victim: 'source', step: 'committed', owner: 'destination' },
  { victim: 'destination', step: 'committed', owner: 'destination', answer: 'undecided' },
];

describe('live migration: a host SIGKILLed at each step of the hand-off (example plugin, hosts in processes of their own)', () => {
  it.each(cases)('$victim killed at $step: one record, one guest, on $owner', async ({ victim, step, owner, answer }) => {
    const dir = await tempDir();
    dirs.push(dir);
    const a = place(dir, 'a');
    const b = place(dir, 'b');
    const src = new HostProcess('source', { ...a, peer: b.identity });
    const dst = new HostProcess('destination', { ...b, peer: a.identity, ...(step === 'incoming-recorded' ? { hold: 'vm/receiveMigration' } : {}) });
    await Promise.all([src.next((l) => l.event === 'ready', 'ready'), dst.next((l) => l.event === 'ready', 'ready')]);
    const started = await src.request('start', { config: { name: 'mover', vcpus: { boot: 1 }, plugin: { tickMs: 20 } } });
    expect(started.ok, JSON.stringify(started.error)).toBe(true);
    const { vmId, console: srcConsole } = started.result as { vmId: string; console: string; pid: number };
    await eventually(async () => (await ticks(srcConsole)).length >= 3, STEP_MS, 'ticks on the source console');

    // What the source guest said last, watched until the migration is settled (its console goes with the VM).
    let seen: number[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const now = await ticks(srcConsole);
        if (now.length > 0) seen = now;
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const survivor = victim === 'source' ? dst : src;
    let migrateAnswer: Line | undefined;
    try {
      migrateAnswer = await handOff(src, dst, vmId, [a, b], victim, step);
    } catch (err) {
      watching = false;
      await watcher;
      throw err;
    }
    // A surviving source answers; anything but undecided says the VM stayed there.
    const undecided = migrateAnswer?.error?.name === 'MigrationUndecidedError';
    if (answer !== undefined) {
      expect(migrateAnswer?.ok).toBe(false);
      if (answer === 'undecided') expect(migrateAnswer?.error?.name, migrateAnswer?.error?.message).toBe('MigrationUndecidedError');
      if (answer === 'failed') expect(undecided, migrateAnswer?.error?.message).toBe(false);
    }
    await survivor.close();

    // The killed host restarts, and the other with it, in one process: both re-attach, and settle what is marked.
    const hostA = freshHost(a);
    const hostB = freshHost(b);
    const [ra, rb] = await Promise.all([hostA.reattach(), hostB.reattach()]);
    // Nothing is lost, and neither host drives a marked VM on its own.
    for (const r of [ra, rb]) {
      expect(r.lost).toEqual([]);
      expect(r.errors).toEqual([]);
      expect(r.abandoned).toEqual([]);
    }
    const marked = [...ra.migrating, ...rb.migrating];
    for (const m of marked) expect(m.vmId).toBe(vmId);
    const verdict = marked.length > 0 ? await hostA.resolveMigration(vmId, hostB) : undefined;
    // Until it is settled, a source guest that was handed back may count on: the owner must carry on from there.
    watching = false;
    await watcher;

    // Exactly one record, unmarked, across both state directories.
    const records = [...(await recordsAt(a)).map((r) => ['source', r] as const), ...(await recordsAt(b)).map((r) => ['destination', r] as const)];
    expect(records.map(([side, r]) => [side, r.vmId, r.migration])).toHaveLength(1);
    const [[side, record]] = records as [[Side, VmRecord]];
    expect(record.vmId).toBe(vmId);
    expect(record.migration).toBeUndefined();
    if (verdict !== undefined) expect(verdict).toBe(side);
    if (owner !== 'either') expect(side).toBe(owner);
    if (answer !== undefined && !undecided) expect(side).toBe('source');
    const [here, there] = side === 'source' ? [a, b] : [b, a];
    const ownerHost = side === 'source' ? hostA : hostB;

    // One guest process, at the owner, answering there and counting on from where the source stopped.
    await eventually(() => guestsUnder([there.runtimeDir]).length === 0, 10_000, 'no guest left where the VM does not run');
    const vm = await ownerHost.attach(vmId);
    const info = await vm!.info();
    expect(info.status).toBe('running');
    expect(guestsUnder([here.runtimeDir, there.runtimeDir])).toEqual([info.pid]);
    const consolePath = (await vm!.console()).path;
    const before = (await ticks(consolePath)).length;
    await eventually(async () => (await ticks(consolePath)).length >= before + 3, 10_000, "the owner's guest counting");
    const counted = await ticks(consolePath);
    expect(consecutive(counted), counted.join(' ')).toBe(true);
    if (side === 'source') expect(counted[0]).toBe(0);
    else expect(counted[0]).toBe((seen.at(-1) as number) + 1);

    // Deleted, nothing of it is left: no guest, no plugin process of either host.
    await vm!.delete();
    for (const h of hosts.splice(0)) await h.close();
    expect((await recordsAt(a)).concat(await recordsAt(b))).toEqual([]);
    await eventually(() => processesUnder([dir]).length === 0 && !pluginPids.some(alive), 10_000, 'no guest or plugin process left');
  });
});
