import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { errors, proc } from 'hvplug/plugin-sdk';
import { consoleTail, guestArgv, readConsole, type GuestArgs } from './guest-program.js';
import { identityOf, isRunning, liveState, stoppedState, unwatchGuest, watchGuest, type ProcessIdentity } from './guest-record.js';
import { childProcess } from './builtins.js';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /**
   * `parent`: we started the guest and the kernel told us how it ended. `observer`: we re-attached to it
   * and only saw it vanish from /proc; the code then comes from its console's power-off line, and the
   * signal is known only when it was ours.
   */
  seenAs: 'parent' | 'observer';
}

// Not node:timers/promises: the module (with what it loads) would stay in every plugin process, guest or none.
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Who waits for the next SIGCHLD: one listener on the process for all of them, however many guests are waited on. */
const sigchldWaiters = new Set<() => void>();

function onSigchld(): void {
  for (const wake of [...sigchldWaiters]) wake();
}

/**
 * Resolves at this process's next SIGCHLD, or after `ms`. Waiting for the kernel's word rather than looking at /proc
 * once per event-loop turn leaves the CPU to the guest, which must run to act on a signal: on a busy host the turns
 * kept it from a core (signal to stopped, mean of 315 pauses on a loaded 2-core host: 1.64 ms that way, 1.10 ms this).
 */
function childSignal(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      sigchldWaiters.delete(done);
      if (sigchldWaiters.size === 0) process.off('SIGCHLD', onSigchld);
      resolve();
    };
    const timer = setTimeout(done, ms);
    if (sigchldWaiters.size === 0) process.on('SIGCHLD', onSigchld);
    sigchldWaiters.add(done);
  });
}

/** How often a re-attached guest, which is not our child and sends us no SIGCHLD, is checked for life. */
const OBSERVE_MS = 200;
/** How often to look while a call is waiting on the guest (boot, pause, stop), at most. */
const STEP_MS = 20;
/**
 * After a signal: SIGSTOP and SIGCONT take effect within tens of microseconds to a millisecond, and a pause that
 * waited a whole step would cost the caller 20 ms of nothing. A guest that is our child is looked at again at each
 * SIGCHLD the kernel sends us (it stopped, continued or ended), or after FIRST_STEP_MS at the latest, each later look
 * waiting twice as long, up to STEP_MS. Any other guest: for the first QUICK_MS once per event-loop turn (a timer's
 * millisecond was most of a pause), then by the same steps.
 */
const QUICK_MS = 1;
const FIRST_STEP_MS = 1;

/**
 * One guest process: started by this plugin process or re-attached from its identity. It runs in its
 * own process group, detached from the plugin, so a plugin crash or upgrade never takes a VM down.
 */
export class Guest {
  readonly exited: Promise<ExitInfo>;
  private resolveExit: (info: ExitInfo) => void = () => undefined;
  private gone = false;
  private observer: NodeJS.Timeout | undefined;
  private killedBy: NodeJS.Signals | null = null;

  private constructor(
    readonly identity: ProcessIdentity,
    readonly consolePath: string,
    /** Where this boot's console output starts. */
    readonly consoleOffset: number,
    private readonly child?: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
    watchGuest(identity.pid);
  }

  get pid(): number {
    return this.identity.pid;
  }

  static async spawn(args: GuestArgs, consolePath: string): Promise<Guest> {
    const offset = await stat(consolePath).then(
      (s) => s.size,
      () => 0,
    );
    const fd = openSync(consolePath, 'a');
    let child: ChildProcess;
    try {
      child = childProcess().spawn(process.execPath, guestArgv(args), {
        // Its own session and process group: no signal aimed at the plugin's group reaches it.
        detached: true,
        stdio: ['ignore', fd, fd],
        // The guest needs nothing from the plugin's environment, and is given nothing of it.
        env: {},
      });
    } finally {
      closeSync(fd);
    }
    const pid = child.pid;
    const identity = pid === undefined ? undefined : identityOf(pid);
    if (identity === undefined) {
      const err = await new Promise<Error | undefined>((resolve) => {
        child.once('error', resolve);
        setImmediate(() => resolve(undefined));
      });
      throw errors.vmmFailure(`could not start the guest process: ${err?.message ?? 'it vanished at once'}`);
    }
    const guest = new Guest(identity, consolePath, offset, child);
    child.once('exit', guest.onChildExit);
    // The plugin may exit while the guest runs on.
    child.unref();
    return guest;
  }

  /**
   * Takes back a guest started by another plugin process (or before vm/disconnect). When it is gone
   * already, `exited` settles at once with what its console tells; a caller that has just seen it running
   * in /proc says so (`seenRunning`), and the first look waits for the next observation.
   */
  static attach(identity: ProcessIdentity, consolePath: string, seenRunning = false): Guest {
    const guest = new Guest(identity, consolePath, 0);
    guest.observer = setInterval(() => guest.observe(), OBSERVE_MS).unref();
    if (!seenRunning) guest.observe();
    return guest;
  }

  /** Stopped by SIGSTOP (paused). */
  private get stopped(): boolean {
    return stoppedState(liveState(this.identity));
  }

  get alive(): boolean {
    return !this.gone && isRunning(this.identity);
  }

  /** Stops watching: no exit will be reported by this handle any more. The process is left alone. */
  detach(): void {
    unwatchGuest(this.pid);
    clearInterval(this.observer);
    this.observer = undefined;
    this.child?.off('exit', this.onChildExit);
  }

  /** Signals the guest's process group; false when the guest is gone (never a recycled pid). */
  signal(sig: NodeJS.Signals): boolean {
    if (!this.alive) return false;
    try {
      process.kill(-this.pid, sig);
      return true;
    } catch {
      return false;
    }
  }

  /** Waits for the boot line on the console (and, for a restore, for the guest to have stopped itself). */
  async booted(signal: AbortSignal, timeoutMs: number, paused: boolean): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.alive) throw errors.vmmFailure(`the guest exited while booting: ${await consoleTail(this.consolePath)}`);
      if (signal.aborted) throw errors.cancelled();
      const reading = await readConsole(this.consolePath, this.consoleOffset);
      if (reading.booted && (!paused || this.stopped)) return;
      if (Date.now() > deadline) throw errors.vmmFailure(`the guest did not boot within ${timeoutMs} ms`);
      await sleep(STEP_MS);
    }
  }

  async pause(): Promise<void> {
    this.signal('SIGSTOP');
    if (!(await this.until(() => this.stopped, 5_000))) throw errors.vmmFailure(`guest ${this.pid} did not stop on SIGSTOP`);
  }

  async resume(): Promise<void> {
    this.signal('SIGCONT');
    if (!(await this.until(() => !this.stopped, 5_000))) throw errors.vmmFailure(`guest ${this.pid} did not continue on SIGCONT`);
  }

  /** Powers the guest off: SIGTERM, and SIGKILL when it has not gone within graceMs (at once for 0). */
  async terminate(graceMs: number, signal?: AbortSignal): Promise<ExitInfo> {
    if (graceMs > 0 && this.signal('SIGTERM')) {
      // A stopped process acts on SIGTERM only once continued.
      this.signal('SIGCONT');
      await this.until(() => this.gone, graceMs, signal);
    }
    if (!this.gone) {
      this.killedBy = 'SIGKILL';
      this.signal('SIGKILL');
      if (!(await this.until(() => this.gone, 5_000))) throw errors.vmmFailure(`guest ${this.pid} survived SIGKILL`);
    }
    return this.exited;
  }

  /** Polls `done` (and the guest's life), at once and then every few ms; false on timeout. Aborting rejects with Cancelled. */
  private async until(done: () => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const quickUntil = proc.monotonicMs() + QUICK_MS;
    for (let step = FIRST_STEP_MS; ; ) {
      this.observe();
      if (done()) return true;
      if (this.gone) return false;
      if (signal?.aborted) throw errors.cancelled();
      if (Date.now() > deadline) return false;
      if (this.child) {
        await childSignal(step);
        step = Math.min(step * 2, STEP_MS);
      } else if (proc.monotonicMs() < quickUntil) {
        await nextTurn();
      } else {
        await sleep(step);
        step = Math.min(step * 2, STEP_MS);
      }
    }
  }

  /** For a guest that is not our child: notices its end by looking at /proc. */
  private observe(): void {
    if (this.child || this.gone || isRunning(this.identity)) return;
    this.gone = true;
    clearInterval(this.observer);
    void readConsole(this.consolePath).then((reading) =>
      this.finish({
        code: reading.powerOff?.code ?? null,
        signal: reading.powerOff ? null : this.killedBy,
        seenAs: 'observer',
      }),
    );
  }

  private readonly onChildExit = (code: number | null, signal: NodeJS.Signals | null): void => {
    this.finish({ code, signal, seenAs: 'parent' });
  };

  private finish(info: ExitInfo): void {
    this.gone = true;
    unwatchGuest(this.pid);
    this.resolveExit(info);
  }
}
