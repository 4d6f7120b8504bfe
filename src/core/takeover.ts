// Taking over files hosts leave behind (a dead host's VM lease, a name claim whose VM is gone) when several hosts
// may judge them stale at once. Reading a file, judging it and removing it are three steps: between them another
// host may have removed it and linked a live file of its own in its place, which a plain rm or rename would take
// with it (two hosts then drive one VM, or two VMs hold one name). So a file judged stale is removed only by the
// one host that links a marker named for that very file (its inode): link(2) lets only one do that. The marker's
// holder reads the file again and removes it only if it is still the file judged (same inode, same text): nobody
// else can remove or replace it meanwhile, as only the marker's holder removes it and its writer is gone. A
// marker whose host died is taken over the same way.
import { link, open, rm } from 'node:fs/promises';
import { randomHex } from './lazy-crypto.js';
import { ownerAlive, ownerIn, type Owner } from './owner.js';
import { readSmallFile, type SmallFile } from './small-file.js';

/**
 * How often a taker tries again after losing a round to a rival's move (its takeover under way, its file released
 * meanwhile), ROUND_WAIT_MS apart when the rival is mid-takeover ('busy'): a takeover takes milliseconds.
 */
export const ROUNDS = 100;
export const ROUND_WAIT_MS = 10;

/** Far above a marker (an owner, some 250 bytes). */
const MAX_MARKER_BYTES = 64 * 1024;
/** A marker of a marker... of a file: each level is a host that died mid-takeover, so two are plenty. */
const MAX_DEPTH = 2;

/**
 * Creates `file` with `text` unless it exists (false then): written whole beside it, then linked into place, so a
 * reader never sees it half written. `sync`: fsync before the link, for a file that must survive a power loss.
 */
export async function linkNew(file: string, text: string, sync: boolean): Promise<boolean> {
  // Unique per call: two calls of one process (one VM acquired twice at once, two hosts in one process) must not
  // remove each other's.
  const tmp = `${file}.${process.pid}.${randomHex(6)}.tmp`;
  try {
    // Within the try: a write or fsync that fails (a full disk) must not leave the temp file to fill it further.
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text);
      if (sync) await fh.sync();
    } finally {
      await fh.close();
    }
    await link(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await rm(tmp, { force: true });
  }
}

/**
 * 'removed': `file` was `judged` and is gone; 'changed': it is not `judged` any more (judge it again); 'busy':
 * another host is taking it over (try again shortly).
 */
export type Removal = 'removed' | 'changed' | 'busy';

/** Removes `file` if it is still the file `judged` stale, as only one of the hosts that judged it does (see above). */
export async function removeStale(file: string, judged: SmallFile, me: Owner, max: number, depth = 0): Promise<Removal> {
  const marker = `${file}.${judged.identity.replace(':', '-')}.takeover`;
  // Not synced: a power loss that loses it took its host with it.
  if (!(await linkNew(marker, JSON.stringify(me), false))) {
    const seen = await readSmallFile(marker, MAX_MARKER_BYTES);
    if (seen === undefined) return 'busy';
    const holder = ownerIn(seen.text);
    if (holder !== undefined && ownerAlive(holder)) return 'busy';
    if (depth < MAX_DEPTH) await removeStale(marker, seen, me, MAX_MARKER_BYTES, depth + 1);
    return 'busy';
  }
  try {
    const now = await readSmallFile(file, max);
    if (now === undefined || now.identity !== judged.identity || now.text !== judged.text) return 'changed';
    await rm(file, { force: true });
    return 'removed';
  } finally {
    await rm(marker, { force: true });
  }
}
