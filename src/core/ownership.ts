import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { newOwner, ownerAlive, ownerIn, type Owner } from './owner.js';
import { ensurePrivateDir } from './paths.js';
import { readSmallFile, type SmallFile } from './small-file.js';
import { linkNew, removeStale, ROUND_WAIT_MS, ROUNDS } from './takeover.js';

export { describeOwner, Owner, ownerAlive } from './owner.js';

/** Far above a lease (some 250 bytes): a bigger file in its place is no lease. */
const MAX_LEASE_BYTES = 64 * 1024;

/** Where a test puts the other host's moves of a race, to make its interleaving certain. */
export interface LeaseSeams {
  /** After a lease was judged stale, before it is taken over. */
  beforeTakeover?: (vmId: string) => Promise<void>;
}

export type Acquired = { ok: true } | { ok: false; owner: Owner };

/** The leases of one state directory: `<stateDir>/owners/<vmId>.json`. */
export class VmLeases {
  private readonly dir: string;
  readonly me: Owner = newOwner();
  private readonly held = new Set<string>();

  constructor(
    stateDir: string,
    private readonly seams: LeaseSeams = {},
  ) {
    this.dir = join(stateDir, 'owners');
  }

  private file(vmId: string): string {
    return join(this.dir, `${vmId}.json`);
  }

  /** The live owner of a VM other than this host, if there is one. */
  async otherOwner(vmId: string): Promise<Owner | undefined> {
    const owner = await this.read(vmId);
    return owner && owner.instance !== this.me.instance && ownerAlive(owner) ? owner : undefined;
  }

  /**
   * Takes the VM's lease unless a live host holds it; a dead holder's lease (or a file there that is no lease) is
   * taken over, by one host only however many try at once (takeover.ts).
   */
  async acquire(vmId: string): Promise<Acquired> {
    if (this.held.has(vmId)) return { ok: true };
    await ensurePrivateDir(this.dir);
    const target = this.file(vmId);
    for (let round = 0; round < ROUNDS; round++) {
      // link(2) fails if the lease exists; synced, as a lease must outlive a power loss that its owner survives.
      if (await linkNew(target, JSON.stringify(this.me), true)) {
        this.held.add(vmId);
        return { ok: true };
      }
      const seen = await this.readLease(vmId);
      if (seen === undefined) continue;
      const owner = seen.owner;
      if (owner?.instance === this.me.instance) {
        this.held.add(vmId);
        return { ok: true };
      }
      if (owner && ownerAlive(owner)) return { ok: false, owner };
      await this.seams.beforeTakeover?.(vmId);
      if ((await removeStale(target, seen.file, this.me, MAX_LEASE_BYTES)) === 'busy') await new Promise((r) => setTimeout(r, ROUND_WAIT_MS));
    }
    const owner = await this.read(vmId);
    if (owner && ownerAlive(owner)) return { ok: false, owner };
    throw new Error(`cannot take the lease of VM ${vmId} in ${this.dir}: other hosts kept taking it over`);
  }

  async release(vmId: string): Promise<void> {
    if (!this.held.has(vmId)) return;
    const owner = await this.read(vmId);
    if (owner?.instance === this.me.instance) await rm(this.file(vmId), { force: true });
    // Only now: a release that failed is tried again by the next (releaseAll at close), not forgotten.
    this.held.delete(vmId);
  }

  /** Every lease this host holds, released (host.close()). */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.held].map((vmId) => this.release(vmId)));
  }

  private async read(vmId: string): Promise<Owner | undefined> {
    return (await this.readLease(vmId))?.owner;
  }

  /**
   * The VM's lease file and the owner it names (none when it does not parse); undefined when there is none. A FIFO,
   * a directory or a file too big in its place is an UnreadableFileError: read as a file, a FIFO would stall the
   * host, and taken over, a file of someone else's.
   */
  private async readLease(vmId: string): Promise<{ owner: Owner | undefined; file: SmallFile } | undefined> {
    // Any failure but ENOENT (EMFILE, EACCES, EIO) is thrown: it says nothing of whether the lease is there.
    const file = await readSmallFile(this.file(vmId), MAX_LEASE_BYTES);
    return file === undefined ? undefined : { owner: ownerIn(file.text), file };
  }
}
