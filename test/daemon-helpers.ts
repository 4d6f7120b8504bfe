import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { startTimeOf } from 'hvplug';
import { alive, CLI, ensureCliBuilt, eventually, removeTempDirs, tempDir } from './helpers.js';

/**
 * `hvplug daemon` and commands through the built CLI, each a process of its own as a user runs them from two
 * terminals. A test file stops the daemons it started with stopDaemons() (afterEach).
 */

export interface Dirs {
  state: string;
  run: string;
}

export interface Daemon {
  child: ResultPromise<{ reject: false; all: false; buffer: true }>;
  pid: number;
  socket: string;
  out: () => string;
  err: () => string;
  /** Log lines (pino JSON on stderr) with this message. */
  logged: (msg: string) => Record<string, unknown>[];
}

const daemons = new Set<Daemon>();

export async function dirs(): Promise<Dirs> {
  return { state: await tempDir('hvplug-daemon-state-'), run: await tempDir('hvplug-daemon-run-') };
}

/** `hvplug --state-dir <state> --runtime-dir <run> ...args`, no config file unless the args give one. */
export function cli(d: Dirs, args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return execa('node', [CLI, '--state-dir', d.state, '--runtime-dir', d.run, ...args], { reject: false, timeout: 60_000, env: { HVPLUG_CONFIG: '' } }).then(
    (r) => ({ exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr }),
  );
}

/** cli(), expected to succeed: its stdout. */
export async function ok(d: Dirs, args: readonly string[]): Promise<string> {
  const r = await cli(d, args);
  expect(r.exitCode, `hvplug ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** `hvplug daemon` on the dirs, `extra` after the command (its flags, or global ones); resolves once it is ready. */
export async function startDaemon(d: Dirs, extra: readonly string[] = []): Promise<Daemon> {
  const child = execa('node', [CLI, '--state-dir', d.state, '--runtime-dir', d.run, '--log-level', 'info', 'daemon', ...extra], {
    reject: false,
    buffer: true,
    env: { HVPLUG_CONFIG: '' },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  await eventually(() => out.includes('ready') || child.exitCode !== null, 30_000, 'the daemon to be ready');
  expect(out, err).toContain('ready');
  const socket = /socket (\S+)/.exec(out)?.[1] ?? '';
  const logged = (msg: string): Record<string, unknown>[] =>
    err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === msg);
  const daemon: Daemon = { child, pid: child.pid!, socket, out: () => out, err: () => err, logged };
  daemons.add(daemon);
  return daemon;
}

export async function stopDaemon(d: Daemon, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | undefined> {
  d.child.kill(signal);
  const r = await d.child;
  daemons.delete(d);
  return r.exitCode;
}

/** Every daemon started and not yet stopped. */
export async function stopDaemons(): Promise<void> {
  for (const d of [...daemons]) await stopDaemon(d);
}

/**
 * The hooks of a test file that drives daemons: the CLI built first, every daemon stopped after each test, and at the
 * end every guest the file saw (add their pids to the set returned) killed and the temporary directories removed.
 * `cleanup` runs first in afterAll, for what else the file started.
 */
export function daemonTestHooks(cleanup?: () => void): Set<number> {
  const guests = new Set<number>();
  beforeAll(ensureCliBuilt, 120_000);
  afterEach(stopDaemons);
  afterAll(async () => {
    cleanup?.();
    for (const pid of guests) {
      try {
        if (alive(pid)) process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await removeTempDirs();
  });
  return guests;
}

/** A row of `hvplug ps --json`, what the daemon tests read of it. */
export interface PsRow {
  id: string;
  name?: string;
  status: string;
  pid?: number;
  owner?: string;
}

/** `hvplug ps --json` on the dirs; each guest pid it shows goes into `guests`, for the file's afterAll to kill. */
export async function ps(d: Dirs, guests?: Set<number>): Promise<PsRow[]> {
  const rows = JSON.parse(await ok(d, ['ps', '--json'])) as PsRow[];
  for (const r of rows) if (r.pid !== undefined) guests?.add(r.pid);
  return rows;
}

/**
 * Writes `<stateDir>/daemon.json` naming this test process as a live daemon serving `socket`, as a daemon writes
 * it: a daemon double (a server in the test) is then what every command finds.
 */
export async function writeDaemonLock(stateDir: string, socket: string, instance: string): Promise<void> {
  const owner = {
    pid: process.pid,
    startTime: startTimeOf(process.pid),
    bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
    hostname: hostname(),
    instance,
    since: new Date().toISOString(),
  };
  await writeFile(join(stateDir, 'daemon.json'), JSON.stringify({ ...owner, socket, stateDir }));
}
