import { constants } from 'node:fs';
import { access, link, open, readFile, rename, rm, stat } from 'node:fs/promises';
import * as z from 'zod/mini';
import { HvplugError } from '../core/index.js';
import { userName } from './group.js';
import { Owner, ownerAlive, VmLeases } from '../core/ownership.js';
import { ensurePrivateDir } from '../core/paths.js';
import { lockPath } from './api.js';

/**
 * One daemon per state directory: `<stateDir>/daemon.json` names it (its process, as a VM lease names its host, and
 * its socket). Taken with link(2) as VM leases are, and taken over from a daemon that died without removing it. A
 * client reads it to find the socket, so that a CLI given another runtime directory than the daemon still finds it.
 */
export const DaemonLockInfo = z.extend(Owner, { socket: z.string(), stateDir: z.string() });
export type DaemonLockInfo = z.output<typeof DaemonLockInfo>;

export type LockResult = { ok: true; info: DaemonLockInfo } | { ok: false; holder: DaemonLockInfo };

/** The lock's holder when it is a live process; undefined when there is none or it died. */
export async function liveDaemon(stateDir: string): Promise<DaemonLockInfo | undefined> {
  const info = await readLock(lockPath(stateDir));
  return info && ownerAlive(info) ? info : undefined;
}

/**
 * For a caller about to run a host of its own on `stateDir`: an error saying so when the directory is another user's
 * that this one may not use, rather than the host failing on its first read there in the words of the system call.
 * Their daemon lets a group reach its socket through the directory (0710), but nothing in it. A caller that found no
 * daemon (killed before it could close the directory again) is told it is not running; a foreground `hvplug run`,
 * which runs a host of its own whether a daemon runs or not, is told where a member's VMs go instead.
 */
export async function checkOwnStateDir(stateDir: string, opts: { foregroundRun?: boolean } = {}): Promise<void> {
  const usable = await access(stateDir, constants.R_OK | constants.W_OK | constants.X_OK).then(
    () => true,
    (err: NodeJS.ErrnoException) => err.code !== 'EACCES',
  );
  if (usable) return;
  const uid = await stat(stateDir).then(
    (st) => st.uid,
    () => undefined,
  );
  if (uid !== undefined && uid === process.getuid?.()) return;
  const whose = uid === undefined ? "another user's" : `${await ownerName(uid)}`;
  const running = opts.foregroundRun ? await liveDaemon(stateDir).catch(() => undefined) : undefined;
  if (running) {
    throw new HvplugError(
      `cannot use the state directory ${stateDir}: it is ${whose}; hvplug run without --detach runs a host of its own there ` +
        '(hvplug run --detach goes through its daemon)',
      'InvalidConfig',
    );
  }
  throw new HvplugError(
    `cannot read the state directory ${stateDir}: it is ${whose}, and its daemon is not running ` +
      "(another user's VMs are reached through their daemon: hvplug daemon --group lets a group in)",
    'InvalidConfig',
  );
}

/** `name's (uid N)` as the system names the user, `uid N's` when it does not. */
async function ownerName(uid: number): Promise<string> {
  const name = await userName(uid);
  return name ? `${name}'s (uid ${uid})` : `uid ${uid}'s`;
}

/**
 * The lock as it is, undefined when there is none or it is not a lock. One this user may not read is another user's
 * daemon that did not let this user in (--group): said so, rather than taken for no daemon, which would send the
 * caller to run a host of its own on a state directory it cannot use either.
 */
async function readLock(file: string): Promise<DaemonLockInfo | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES') {
      throw new HvplugError(
        `cannot read the daemon lock ${file}: permission denied (the state directory is another user's; its daemon lets a group in with hvplug daemon --group)`,
        'InvalidConfig',
      );
    }
    return undefined;
  }
  try {
    const parsed = DaemonLockInfo.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the state directory's lock for this process. `socketGroup`: the group of the daemon's socket, whose members'
 * commands read the lock to find it (0640, owned by that group; 0600 without one).
 */
export async function acquireDaemonLock(stateDir: string, socket: string, socketGroup?: number): Promise<LockResult> {
  await ensurePrivateDir(stateDir);
  const file = lockPath(stateDir);
  // The lease's notion of "this process" (pid, start time, boot): a daemon is taken over exactly when a lease would be.
  const info: DaemonLockInfo = { ...new VmLeases(stateDir).me, socket, stateDir };
  for (let round = 0; round < 3; round++) {
    const tmp = `${file}.${info.instance}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      if (socketGroup !== undefined) {
        // Given the group before its mode lets a group read it, as the socket is.
        await fh.chown(-1, socketGroup);
        await fh.chmod(0o640);
      }
      await fh.writeFile(JSON.stringify(info));
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(tmp, file);
      return { ok: true, info };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      await rm(tmp, { force: true });
    }
    const holder = await readLock(file);
    if (holder && ownerAlive(holder)) return { ok: false, holder };
    // Dead or unreadable: moved aside under our own name, so that of two daemons taking over only one removes it.
    const aside = `${file}.${info.instance}.stale`;
    await rename(file, aside).then(
      () => rm(aside, { force: true }),
      () => undefined,
    );
  }
  const holder = await readLock(file);
  if (holder) return { ok: false, holder };
  throw new Error(`cannot take ${file}`);
}

/** Removes the lock if it is still ours. */
export async function releaseDaemonLock(info: DaemonLockInfo): Promise<void> {
  const file = lockPath(info.stateDir);
  const now = await readLock(file);
  if (now?.instance === info.instance) await rm(file, { force: true });
}
