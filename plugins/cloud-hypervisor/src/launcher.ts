// Starts a `cloud-hypervisor` VMM for one VM, detached from the plugin: its own session (so the host's
// kill of the plugin's process group does not reach it), stdio to a log file (so it never writes to a
// pipe whose reader is gone), unref'd (so the plugin can exit while it runs). The VM outlives the plugin.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { errors, proc } from 'hvplug/plugin-sdk';
import { CloudHypervisorClient } from './api-client.js';
import { optionPathValue, type VmPaths } from './paths.js';

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Launched {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly startTicks: number;
  /** Resolves when the child exits; the plugin is its parent, so it learns the code and signal. */
  readonly exited: Promise<ExitInfo>;
}

/** HVPLUG_CH_BINARY, else `cloud-hypervisor` looked up on PATH. */
export function vmmBinary(env: NodeJS.ProcessEnv = process.env): string {
  return env.HVPLUG_CH_BINARY || 'cloud-hypervisor';
}

/** The last lines of the VMM's log, for errors about a VMM that failed to start. */
export async function logTail(paths: VmPaths, lines = 10): Promise<string> {
  const text = await readFile(paths.log, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-lines).join('\n');
}

/** What a user can act on, instead of the errno of a failed spawn. */
function spawnFailure(binary: string, err: NodeJS.ErrnoException): string {
  const where = binary.includes('/') ? '' : ' on PATH';
  const how = 'install cloud-hypervisor or set HVPLUG_CH_BINARY in the plugin\'s env ([plugins.cloud-hypervisor] env in the config)';
  if (err.code === 'ENOENT') return `the Cloud Hypervisor binary ${binary} was not found${where}; ${how}`;
  if (err.code === 'EACCES') return `the Cloud Hypervisor binary ${binary} is not executable; ${how}`;
  return `cannot start the Cloud Hypervisor binary ${binary}: ${err.message}`;
}

function spawned(child: ChildProcess, binary: string): Promise<number> {
  return new Promise((resolve, reject) => {
    // Kept for the child's life: an 'error' without a listener would crash the plugin.
    child.on('error', (err) => reject(errors.vmmFailure(spawnFailure(binary, err), 'spawn')));
    child.once('spawn', () => resolve(child.pid ?? 0));
  });
}

/**
 * Starts the VMM and waits until its API answers vmm.ping. On failure (no binary, early exit, no answer
 * in time, cancellation) nothing is left running.
 */
export async function launchVmm(paths: VmPaths, opts: { binary: string; readyTimeoutMs: number; signal?: AbortSignal }): Promise<Launched> {
  const log = openSync(paths.log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(opts.binary, ['--api-socket', optionPathValue(paths.socket), '--event-monitor', optionPathValue(paths.events)], {
      cwd: paths.dir,
      detached: true,
      stdio: ['ignore', log, log],
    });
  } finally {
    closeSync(log);
  }
  const exited = new Promise<ExitInfo>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const pid = await spawned(child, opts.binary);
  child.unref();
  const client = new CloudHypervisorClient({ socketPath: paths.socket, timeoutMs: 2_000 });
  let gone: ExitInfo | undefined;
  void exited.then((e) => (gone = e));
  const early = exited.then(async (e) => {
    throw errors.vmmFailure(
      `${opts.binary} exited (${e.signal ? `signal ${e.signal}` : `code ${e.code}`}) before its API answered on ${paths.socket}: ${await logTail(paths)}`,
      'exited',
    );
  });
  try {
    await Promise.race([client.waitReady({ timeoutMs: opts.readyTimeoutMs, intervalMs: 20, signal: opts.signal }), early]);
  } catch (err) {
    if (!gone) {
      killVmm(pid);
      await exited;
    }
    if (err instanceof Error && err.name === 'ChConnectionError') {
      throw errors.vmmFailure(`${opts.binary} did not answer on ${paths.socket} within ${opts.readyTimeoutMs} ms: ${await logTail(paths)}`, 'not-ready');
    }
    throw err;
  } finally {
    early.catch(() => undefined);
  }
  const startTicks = proc.readStat(pid)?.startTicks ?? 0;
  return { child, pid, startTicks, exited };
}

/**
 * SIGKILL to the VMM's process group (it leads one, being started detached), so whatever it started goes
 * too; nothing is sent when the pid no longer names the process that started at `startTicks`.
 */
export function killVmm(pid: number, startTicks?: number): void {
  if (!proc.isRunning(pid, startTicks)) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone in between.
    }
  }
}
