import { hostname } from 'node:os';
import * as z from 'zod/mini';
import { bootId, ownerAlive, startTimeOf } from './proc.js';
import { randomUuid } from '../proc/index.js';

/**
 * Who drives a VM. One host at a time may: two would both re-attach it, and with QEMU (one QMP client at a time)
 * the second would call a healthy VM lost. A lease is a file per VM naming its owner; a crashed owner leaves its
 * file behind, so an owner counts only while its process lives: the same pid with the same start time (clock
 * ticks since boot, from /proc) on the same boot. Node has no flock(2), which would die with its process by
 * itself; pid + start time + boot id is what stale-lock detection needs instead, and a pid reused after a crash
 * or a reboot does not pass for the old owner.
 */
export const Owner = z.object({
  pid: z.number().check(z.int(), z.positive()),
  /** Field 22 of /proc/<pid>/stat. */
  startTime: z.string(),
  bootId: z.string(),
  hostname: z.string(),
  /** Tells two hosts of one process apart. */
  instance: z.string(),
  since: z.string(),
});
export type Owner = z.output<typeof Owner>;

// In proc.ts, which loads no zod: the CLI's fast path (src/cli/fast.ts) checks the daemon's lock with it.
export { ownerAlive };

/** This process as a new owner: `instance` tells it from the other hosts of this process. */
export function newOwner(): Owner {
  return {
    pid: process.pid,
    startTime: startTimeOf(process.pid) ?? 'unknown',
    bootId: bootId(),
    hostname: hostname(),
    instance: randomUuid(),
    since: new Date().toISOString(),
  };
}

/** The owner a file's text names, undefined when it names none. */
export function ownerIn(text: string): Owner | undefined {
  try {
    const parsed = Owner.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export function describeOwner(owner: Owner): string {
  return `host process ${owner.pid} on ${owner.hostname} (since ${owner.since})`;
}
