// Starts QEMU detached from the caller: its own session and process group, stdio to files in the
// VM's runtime directory, not waited on. A plugin that crashes or restarts therefore leaves its VMs
// running, and a later plugin re-attaches through the QMP socket (attachQemu).
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { proc } from 'hvplug/plugin-sdk';
import { mkdir, readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { DEFAULT_QEMU_BINARY } from './cmdline.js';
import { QmpClient } from './qmp.js';

export const STDOUT_FILE = 'qemu.stdout.log';
export const STDERR_FILE = 'qemu.stderr.log';
/** Where QEMU writes its pid (-pidfile, relative to the run directory, its cwd). */
export const PIDFILE = 'qemu.pid';
/** The QMP socket of a VM's QEMU, relative to its run directory. */
export const QMP_SOCKET = 'qmp.sock';
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

export interface QemuExit {
  /** null when killed by a signal, or when QEMU was not this process's child (re-attached). */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface QemuInstance {
  readonly pid: number;
  readonly runDir: string;
  readonly qmp: QmpClient;
  readonly stdoutPath: string;
  readonly stderrPath: string;
  /** Settles when the QEMU process is gone. */
  readonly exited: Promise<QemuExit>;
  /** Stops watching the process and closes QMP; QEMU keeps running. */
  detach(): void;
}

export class QemuStartError extends Error {
  override readonly name = 'QemuStartError';
  constructor(
    message: string,
    /** What QEMU wrote to stderr during this start attempt. */
    readonly stderr: string,
    readonly exit?: QemuExit,
  ) {
    super(stderr.trim() === '' ? message : `${message}: ${stderr.trim()}`);
  }
}

export interface StartQemuOptions {
  readonly binary?: string;
  readonly args: readonly string[];
  /** Created if missing; QEMU's working directory, so relative paths in `args` resolve here. */
  readonly runDir: string;
  /** The QMP socket as given to QEMU: absolute, or relative to runDir. */
  readonly qmpSocket: string;
  /** For QEMU to create the QMP socket and answer on it. Default 15 s. */
  readonly timeoutMs?: number;
  /** QEMU's environment. Default: PATH, HOME, LANG and TMPDIR of this process. */
  readonly env?: NodeJS.ProcessEnv;
  readonly signal?: AbortSignal;
}

/**
 * A path QMP can connect to. sun_path holds 107 bytes; a longer path is reached through the QEMU
 * process's working directory (/proc/<pid>/cwd), which is the runtime directory.
 */
export function connectablePath(runDir: string, socket: string, pid: number): string {
  const abs = isAbsolute(socket) ? socket : resolve(runDir, socket);
  if (Buffer.byteLength(abs) <= MAX_SOCKET_PATH) return abs;
  const rel = isAbsolute(socket) ? undefined : socket;
  const viaProc = rel === undefined ? undefined : `/proc/${pid}/cwd/${rel}`;
  if (viaProc !== undefined && Buffer.byteLength(viaProc) <= MAX_SOCKET_PATH) return viaProc;
  throw new QemuStartError(`socket path ${abs} is longer than ${MAX_SOCKET_PATH} bytes; pass it relative to the runtime directory`, '');
}

function defaultEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of ['PATH', 'HOME', 'LANG', 'TMPDIR']) if (process.env[k] !== undefined) env[k] = process.env[k];
  return env;
}

function readFrom(path: string, offset: number): string {
  try {
    return readFileSync(path).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `pid` is gone; for processes that are not our children (no exit event). */
function watchPid(pid: number, intervalMs: number): { exited: Promise<QemuExit>; stop: () => void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const exited = new Promise<QemuExit>((resolveExit) => {
    const tick = (): void => {
      if (stopped) return;
      if (!proc.isAlive(pid)) return resolveExit({ code: null, signal: null });
      timer = setTimeout(tick, intervalMs);
      // The watcher alone must not keep a plugin process alive.
      timer.unref();
    };
    tick();
  });
  return {
    exited,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** Spawns QEMU, waits until QMP answers, and fails with QEMU's stderr if it exits first. */
export async function startQemu(opts: StartQemuOptions): Promise<QemuInstance> {
  const binary = opts.binary ?? DEFAULT_QEMU_BINARY;
  await mkdir(opts.runDir, { recursive: true });
  const stdoutPath = join(opts.runDir, STDOUT_FILE);
  const stderrPath = join(opts.runDir, STDERR_FILE);
  // Appended, so a restore in the same directory keeps the earlier run's messages; this start's
  // stderr is what follows `stderrStart`.
  const stderrStart = existsSync(stderrPath) ? statSync(stderrPath).size : 0;
  const out = openSync(stdoutPath, 'a');
  const err = openSync(stderrPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(binary, [...opts.args], { cwd: opts.runDir, env: opts.env ?? defaultEnv(), detached: true, stdio: ['ignore', out, err] });
  } finally {
    // The child has its own copies of the descriptors.
    closeSync(out);
    closeSync(err);
  }
  const spawned = await new Promise<number | Error>((res) => {
    child.once('spawn', () => res(child.pid ?? new Error('no pid')));
    child.once('error', (e) => res(e));
  });
  if (spawned instanceof Error) {
    const code = 'code' in spawned ? String(spawned.code) : '';
    const hint = code === 'ENOENT' ? ' (apt-get install qemu-system-x86)' : '';
    throw new QemuStartError(`cannot run ${binary}: ${spawned.message}${hint}`, '');
  }
  const pid = spawned;
  child.unref();
  const exited = new Promise<QemuExit>((res) => child.once('exit', (code, signal) => res({ code, signal })));

  const abort = new AbortController();
  const onCallerAbort = (): void => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onCallerAbort, { once: true });
  void exited.then(() => abort.abort(new QemuStartError('QEMU exited during start', '')));
  try {
    const qmp = await QmpClient.connect(connectablePath(opts.runDir, opts.qmpSocket, pid), { timeoutMs: opts.timeoutMs ?? 15_000, signal: abort.signal });
    let detached = false;
    return {
      pid,
      runDir: opts.runDir,
      qmp,
      stdoutPath,
      stderrPath,
      exited,
      detach: () => {
        if (detached) return;
        detached = true;
        qmp.close();
      },
    };
  } catch (e) {
    // Give an exiting QEMU a moment to finish writing stderr and be reaped.
    const exit = await Promise.race([exited, sleep(500).then(() => undefined)]);
    if (exit === undefined) await killProcessGroup(pid, { graceMs: 1000 });
    const stderr = readFrom(stderrPath, stderrStart);
    if (exit !== undefined) {
      const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
      throw new QemuStartError(`QEMU exited during start with ${how}`, stderr, exit);
    }
    throw new QemuStartError(`QEMU did not answer on QMP: ${e instanceof Error ? e.message : String(e)}`, stderr);
  } finally {
    opts.signal?.removeEventListener('abort', onCallerAbort);
  }
}

export interface AttachQemuOptions {
  readonly pid: number;
  readonly runDir: string;
  readonly qmpSocket: string;
  readonly timeoutMs?: number;
  /** How often to check whether the process is still there. Default 250 ms. */
  readonly pollMs?: number;
}

/**
 * Re-attaches to a QEMU that an earlier plugin process started. Checks that the pid still runs a
 * QEMU with this QMP socket on its command line, working in `runDir` (startQemu makes it QEMU's cwd),
 * so a recycled pid is not mistaken for the VM.
 */
export async function attachQemu(opts: AttachQemuOptions): Promise<QemuInstance> {
  const argv = proc.cmdline(opts.pid);
  if (argv === undefined || !proc.isAlive(opts.pid)) throw new QemuStartError(`QEMU process ${opts.pid} is gone`, '');
  if (!argv.some((a) => a.includes(opts.qmpSocket)) || !sameDir(`/proc/${opts.pid}/cwd`, opts.runDir)) {
    throw new QemuStartError(`process ${opts.pid} is not the QEMU serving ${opts.qmpSocket} in ${opts.runDir}: ${argv.slice(0, 3).join(' ')}`, '');
  }
  const qmp = await QmpClient.connect(connectablePath(opts.runDir, opts.qmpSocket, opts.pid), { timeoutMs: opts.timeoutMs ?? 5_000 });
  const watch = watchPid(opts.pid, opts.pollMs ?? 250);
  let detached = false;
  return {
    pid: opts.pid,
    runDir: opts.runDir,
    qmp,
    stdoutPath: join(opts.runDir, STDOUT_FILE),
    stderrPath: join(opts.runDir, STDERR_FILE),
    exited: watch.exited,
    detach: () => {
      if (detached) return;
      detached = true;
      watch.stop();
      qmp.close();
    },
  };
}

/** Both paths name the same directory; false if either cannot be resolved. */
function sameDir(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

/** Waits up to `timeoutMs` for `pid` to be gone; true if it is. */
export function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  return proc.outlived([pid], timeoutMs);
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    // QEMU leads its own process group (detached), which also holds what it spawned (exec: migration).
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // Already gone.
    }
  }
}

/** SIGTERM to QEMU's process group, SIGKILL after `graceMs`. Resolves once the process is gone. */
export async function killProcessGroup(pid: number, opts: { readonly graceMs?: number } = {}): Promise<void> {
  if (!proc.isAlive(pid)) return;
  signalGroup(pid, 'SIGTERM');
  if (await waitForExit(pid, opts.graceMs ?? 3_000)) return;
  signalGroup(pid, 'SIGKILL');
  await waitForExit(pid, 5_000);
}

/** QMP `quit`, then signals if QEMU is still there after `timeoutMs`. */
export async function quitQemu(inst: QemuInstance, opts: { readonly timeoutMs?: number } = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 3_000;
  try {
    await inst.qmp.execute('quit', undefined, { timeoutMs });
  } catch {
    // QEMU may close the socket before its answer to quit is read, or QMP may be gone already:
    // either way the exit check below decides whether signals are needed.
  }
  if (!(await waitForExit(inst.pid, timeoutMs))) await killProcessGroup(inst.pid, { graceMs: 1_000 });
  inst.detach();
}

/** The pid QEMU wrote with -pidfile, if the file is there. */
export async function readPidfile(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * The QEMU the pidfile in `runDir` names, if that process still runs there serving `qmpSocket`. It is how a
 * QEMU is found whose pid never reached the VM's state: the plugin or its host died while the call that spawned
 * it ran. The pid is checked as attachQemu checks it, so a recycled pid is never taken for the VM's QEMU.
 */
export async function qemuOfPidfile(runDir: string, qmpSocket: string): Promise<number | undefined> {
  const pid = await readPidfile(join(runDir, PIDFILE));
  if (pid === undefined || !proc.isAlive(pid)) return undefined;
  const argv = proc.cmdline(pid);
  if (argv === undefined || !argv.some((a) => a.includes(qmpSocket)) || !sameDir(`/proc/${pid}/cwd`, runDir)) return undefined;
  return pid;
}
