import { link, open, rename, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { ensurePrivateDir } from './paths.js';
import { bootId, ownerAlive, startTimeOf } from './proc.js';
import { readSmallFile } from './small-file.js';
import { UnreadableFileError } from '../errors/index.js';
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

export function describeOwner(owner: Owner): string {
  return `host process ${owner.pid} on ${owner.hostname} (since ${owner.since})`;
}

/** Far above a lease (some 250 bytes): a bigger file in its place is no lease. */
const MAX_LEASE_BYTES = 64 * 1024;

export type Acquired = { ok: true } | { ok: false; owner: Owner };

/** The leases of one state directory: `<stateDir>/owners/<vmId>.json`. */
export class VmLeases {
  private readonly dir: string;
  readonly me: Owner;
  private readonly held = new Set<string>();

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'owners');
    this.me = {
      pid: process.pid,
      startTime: startTimeOf(process.pid) ?? 'unknown',
      bootId: bootId(),
      hostname: hostname(),
      instance: randomUuid(),
      since: new Date().toISOString(),
    };
  }

  private file(vmId: string): string {
    return join(this.dir, `${vmId}.json`);
  }

  /** The live owner of a VM other than this host, if there is one. */
  async otherOwner(vmId: string): Promise<Owner | undefined> {
    const owner = await this.read(vmId);
    return owner && owner.instance !== this.me.instance && ownerAlive(owner) ? owner : undefined;
  }

  /** Takes the VM's lease unless a live host holds it; a dead holder's lease is taken over. */
  async acquire(vmId: string): Promise<Acquired> {
    if (this.held.has(vmId)) return { ok: true };
    await ensurePrivateDir(this.dir);
    const target = this.file(vmId);
    // Three rounds: a stale lease moved aside by us or by a rival between our reads.
    for (let round = 0; round < 3; round++) {
      // Written whole beside it, then linked into place: link(2) fails if the lease exists, and a reader never
      // sees a lease half written.
      const tmp = `${target}.${this.me.instance}.tmp`;
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(JSON.stringify(this.me));
        await fh.sync();
      } finally {
        await fh.close();
      }
      try {
        await link(tmp, target);
        this.held.add(vmId);
        return { ok: true };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      } finally {
        await rm(tmp, { force: true });
      }
      const owner = await this.read(vmId);
      if (owner && owner.instance === this.me.instance) {
        this.held.add(vmId);
        return { ok: true };
      }
      if (owner && ownerAlive(owner)) return { ok: false, owner };
      // Stale (or unreadable: not a lease of ours at all): move it aside under a name of our own, atomically, so that
      // of two hosts taking over only one removes it.
      const aside = `${target}.${this.me.instance}.stale`;
      await rename(target, aside).then(
        () => rm(aside, { force: true }),
        () => undefined,
      );
    }
    const owner = await this.read(vmId);
    if (owner) return { ok: false, owner };
    throw new Error(`cannot take the lease of VM ${vmId} in ${this.dir}`);
  }

  async release(vmId: string): Promise<void> {
    if (!this.held.delete(vmId)) return;
    const owner = await this.read(vmId);
    if (owner?.instance === this.me.instance) await rm(this.file(vmId), { force: true });
  }

  /** Every lease this host holds, released (host.close()). */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.held].map((vmId) => this.release(vmId)));
  }

  /**
   * The VM's lease, undefined when none parses. A FIFO, a directory or a file too big in its place is an
   * UnreadableFileError: read as a file, a FIFO would stall the host, and taken over, a file of someone else's.
   */
  private async read(vmId: string): Promise<Owner | undefined> {
    try {
      const file = await readSmallFile(this.file(vmId), MAX_LEASE_BYTES);
      if (file === undefined) return undefined;
      const parsed = Owner.safeParse(JSON.parse(file.text));
      return parsed.success ? parsed.data : undefined;
    } catch (err) {
      if (err instanceof UnreadableFileError) throw err;
      return undefined;
    }
  }
}
