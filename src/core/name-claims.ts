// VM names unique per state directory across processes: a name is claimed by link(2) of a file named for it,
// which fails when another VM holds it, whatever process or host made that one. The file holds the holder's
// id; a claim whose holder has no record any more (its files edited by hand) is stale and taken over.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { AlreadyExistsError, UnreadableFileError } from '../errors/index.js';
import { sha256Hex } from './lazy-crypto.js';
import { ensurePrivateDir } from './paths.js';
import { newOwner, type Owner } from './owner.js';
import { readSmallFile, type SmallFile } from './small-file.js';
import { linkNew, removeStale, ROUND_WAIT_MS, ROUNDS } from './takeover.js';

const Claim = z.object({ name: z.string(), vmId: z.string() });
/** Far above a claim (a name and an id): a bigger file in its place is no claim. */
const MAX_CLAIM_BYTES = 64 * 1024;

/** Where a test puts the other host's moves of a race, to make its interleaving certain. */
export interface ClaimSeams {
  /** After a claim was judged stale, before it is taken over. */
  beforeTakeover?: (name: string) => Promise<void>;
}

export class NameClaims {
  readonly dir: string;
  private owner: Owner | undefined;

  constructor(
    private readonly stateDir: string,
    /** The name a VM's record holds now, undefined when it has no record; UnreadableFileError when it cannot tell. */
    private readonly nameOf: (vmId: string) => Promise<string | undefined>,
    private readonly seams: ClaimSeams = {},
  ) {
    this.dir = join(stateDir, 'names');
  }

  /** Who takes a stale claim over (takeover.ts's markers name it); made when first needed, as few claims are stale. */
  private get me(): Owner {
    return (this.owner ??= newOwner());
  }

  /** Any string is a name: the file is named by its hash, never by the name itself. */
  private file(name: string): string {
    return join(this.dir, sha256Hex(name));
  }

  /**
   * Claims `name` for `vmId`; AlreadyExistsError naming the holder when another VM has it. A stale claim is taken
   * over by one claimant only, however many try at once (takeover.ts).
   */
  async claim(name: string, vmId: string): Promise<void> {
    await ensurePrivateDir(this.dir, this.stateDir);
    const target = this.file(name);
    for (let round = 0; ; round++) {
      // Not fsync'd: claims never were (a record is).
      if (await linkNew(target, JSON.stringify({ name, vmId }), false)) return;
      const seen = await this.read(target);
      if (seen === undefined) continue;
      const holder = seen.holder;
      if (holder === vmId) return;
      if ((holder !== undefined && (await this.holdsName(holder, name))) || round >= ROUNDS) {
        throw new AlreadyExistsError(`the name "${name}" is taken by VM ${holder ?? '(unknown)'}`, holder ?? vmId);
      }
      await this.seams.beforeTakeover?.(name);
      if ((await removeStale(target, seen.file, this.me, MAX_CLAIM_BYTES)) === 'busy') await new Promise((r) => setTimeout(r, ROUND_WAIT_MS));
    }
  }

  /**
   * Whether the claim's holder still bears the name. A holder whose record cannot be read does, as far as anyone can
   * tell: only a record that is gone frees the name (refused here, naming the record's file).
   */
  private async holdsName(holder: string, name: string): Promise<boolean> {
    try {
      return (await this.nameOf(holder)) === name;
    } catch (err) {
      if (!(err instanceof UnreadableFileError)) throw err;
      throw new AlreadyExistsError(`the name "${name}" is taken by VM ${holder}, whose record cannot be read: ${err.message}`, holder);
    }
  }

  /** The VM whose claim `name` is, if any (and if this process may read the claim). */
  holderOf(name: string): Promise<string | undefined> {
    return this.holder(this.file(name));
  }

  /** Frees `name` if `vmId` holds it. */
  async release(name: string, vmId: string): Promise<void> {
    const target = this.file(name);
    // A FIFO or a directory there is nobody's claim, this VM's least: left for whoever put it there.
    const holder = await this.holder(target).catch((err: unknown) => {
      if (err instanceof UnreadableFileError) return undefined;
      throw err;
    });
    if (holder === vmId) await rm(target, { force: true });
  }

  /** The VM a claim names, undefined when none parses (see read). */
  private async holder(file: string): Promise<string | undefined> {
    return (await this.read(file))?.holder;
  }

  /**
   * A claim's file and the VM it names (none when it does not parse); undefined when there is none. A FIFO, a
   * directory or a file too big in its place is an UnreadableFileError: read as a file, a FIFO would stall the host;
   * taken over, the name may be someone's.
   */
  private async read(file: string): Promise<{ holder: string | undefined; file: SmallFile } | undefined> {
    // Any failure but ENOENT (EMFILE, EACCES, EIO) is thrown: it says nothing of whether the claim is there.
    const read = await readSmallFile(file, MAX_CLAIM_BYTES);
    if (read === undefined) return undefined;
    let json: unknown;
    try {
      json = JSON.parse(read.text);
    } catch {
      return { holder: undefined, file: read };
    }
    const parsed = Claim.safeParse(json);
    return { holder: parsed.success ? parsed.data.vmId : undefined, file: read };
  }
}
