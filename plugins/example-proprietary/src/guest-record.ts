// The guest process's identity, and how to find it again: its pidfile in the VM's runtime directory, else /proc.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
// A namespace import lets esbuild keep only the zod a plugin uses.
import * as z from 'zod/mini';
import { proc } from 'hvplug/plugin-sdk';
import { GUEST_TITLE } from './guest-program.js';

/** pid, start time and boot: a process's identity across pid reuse and host reboots. */
export const ProcessIdentity = z.object({ pid: z.int().check(z.positive()), startTime: z.int().check(z.nonnegative()), bootId: z.string().check(z.minLength(1)) });
export type ProcessIdentity = z.output<typeof ProcessIdentity>;

export function identityOf(pid: number): ProcessIdentity | undefined {
  const stat = proc.readStat(pid);
  return stat && { pid, startTime: stat.startTicks, bootId: proc.bootId() };
}

/** The scheduler state (R, S, T...) of the process with this identity while it exists and has not exited; else undefined. */
export function liveState(id: ProcessIdentity): string | undefined {
  return id.bootId === proc.bootId() ? proc.runningStat(id.pid, id.startTime)?.state : undefined;
}

export const isRunning = (id: ProcessIdentity): boolean => liveState(id) !== undefined;

/** Stopped by SIGSTOP (T), or by a tracer (t). */
export const stoppedState = (state: string | undefined): boolean => state === 'T' || state === 't';

/**
 * The pids of the guests this plugin process watches (Guest adds and drops them): each is the guest of a VM this
 * process knows, so none is another VM's stray. The scan below passes over them unread: it read the command line
 * of every process, and at 1,000 running VMs each start and delete read 1,000 /proc files, blocking the event loop
 * (the scale bench's p99 of a call nearly doubled). A watched pid recycled for a stray before its exit is noticed
 * would be missed; pids are not reused that fast.
 */
const watched = new Set<number>();
export const watchGuest = (pid: number): void => void watched.add(pid);
export const unwatchGuest = (pid: number): void => void watched.delete(pid);

/** Live guests /proc shows for the VM whose agent socket this is (its title or argv names it), lowest pid first. */
function guestsOf(agentSocketPath: string): number[] {
  return proc
    .pids()
    .filter((pid) => {
      if (watched.has(pid)) return false;
      const cmdline = proc.cmdline(pid)?.join(' ') ?? '';
      return cmdline.includes(GUEST_TITLE) && cmdline.includes(` ${agentSocketPath}`) && proc.isAlive(pid);
    })
    .sort((a, b) => a - b);
}

/**
 * The guest's identity is also kept next to it in the VM's runtime directory (a pidfile, as VMMs write).
 * The host's copy of the state can be one step behind: a host that dies between sending vm/start and
 * storing its answer holds a state without the guest. vm/recover then finds the guest here rather than
 * leaving it running unknown to anyone.
 */
const FILE = 'guest.json';

export async function writeGuestRecord(dir: string, id: ProcessIdentity): Promise<void> {
  const tmp = join(dir, `.${FILE}.${process.pid}`);
  await writeFile(tmp, JSON.stringify(id));
  await rename(tmp, join(dir, FILE));
}

async function readGuestRecord(dir: string): Promise<ProcessIdentity | undefined> {
  try {
    const parsed = ProcessIdentity.safeParse(JSON.parse(await readFile(join(dir, FILE), 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The guest of a VM: the one its record names while that one runs, else the one /proc shows with the VM's agent
 * socket on its command line (its argv, then its title). A plugin killed between spawning a guest and writing its
 * record leaves a guest that only /proc knows, and a VM deleted without it would leave it running for good.
 */
export async function findGuest(dir: string, agentSocketPath: string): Promise<ProcessIdentity | undefined> {
  const recorded = await readGuestRecord(dir);
  if (recorded && isRunning(recorded)) return recorded;
  const [pid] = guestsOf(agentSocketPath);
  return (pid === undefined ? undefined : identityOf(pid)) ?? recorded;
}

/** How long a stray guest gets to be gone after SIGKILL before the call goes on regardless. */
const STRAY_REAP_MS = 2_000;

/**
 * Ends every guest /proc shows for this VM (its title and agent socket on the command line). Only one guest may
 * exist per VM; another is a leftover of a start cut short by a plugin's death (the spawn happened, the record
 * never said so), and a delete or a new start must not leave it running.
 */
export async function endStrayGuests(agentSocketPath: string): Promise<void> {
  const strays = guestsOf(agentSocketPath);
  for (const pid of strays) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  await proc.outlived(strays, STRAY_REAP_MS);
}
