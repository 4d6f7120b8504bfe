import { existsSync, lstatSync, type Stats } from 'node:fs';
import { chmod, chown, lstat, mkdir, stat } from 'node:fs/promises';
import { homedir, tmpdir, userInfo } from 'node:os';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';

/** --state-dir, else HVPLUG_STATE_DIR, else the XDG state home. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HVPLUG_STATE_DIR) return env.HVPLUG_STATE_DIR;
  const base = env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'hvplug');
}

/**
 * The plugins config the command line reads when none is named: $HVPLUG_CONFIG (set but empty: none),
 * else the first that exists of $XDG_CONFIG_HOME/hvplug/plugins.toml (~/.config when unset) and
 * /etc/hvplug/plugins.toml, as containerd reads /etc/containerd/config.toml. The library reads only
 * what it is given (configFile, HVPLUG_CONFIG): an embedder's host does not pick up a system file.
 */
export function defaultConfigFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.HVPLUG_CONFIG !== undefined) return env.HVPLUG_CONFIG || undefined;
  const user = join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'hvplug', 'plugins.toml');
  return [user, '/etc/hvplug/plugins.toml'].find((f) => existsSync(f));
}

/** Sockets and pidfiles: XDG_RUNTIME_DIR when there is one, else a per-user directory in tmp. */
export function defaultRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HVPLUG_RUNTIME_DIR) return env.HVPLUG_RUNTIME_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'hvplug');
  // The host's env (PluginHostOptions.env) decides, as it does for XDG_RUNTIME_DIR.
  return join(env.TMPDIR || tmpdir(), `hvplug-${userInfo().uid}`);
}

/** A directory the host would use that someone else could control: refused, never used. */
export class UnsafeDirectoryError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(`refusing to use ${path}: ${problem}`);
    this.name = 'UnsafeDirectoryError';
  }
}

/**
 * The one mode besides 0700 a private directory keeps: its group may pass through to an entry it knows the name of
 * and is let into (the daemon's socket, with --group), but may not list it or open anything else in it. See
 * shareWithGroup.
 */
const GROUP_PASSES = 0o710;

/**
 * Checks a directory the host created or found: a real directory (lstat, so a planted symlink is seen,
 * not followed), ours, and writable by nobody else. Someone else may have planted entries in a group- or
 * world-writable one, so it is refused even when ours; one readable by others is tightened to 0700. 0710 is left
 * as it is: only its owner could have set it (a daemon with --group), and another hvplug process of the owner's
 * (a command with a host of its own) must not cut the daemon's group off.
 */
async function checkPrivate(dir: string): Promise<void> {
  const st = await lstat(dir);
  refuseUnsafe(dir, st);
  const mode = st.mode & 0o7777;
  if (mode & 0o077 && mode !== GROUP_PASSES) await chmod(dir, 0o700);
}

/** Throws UnsafeDirectoryError when `st` (an lstat) is not a directory only its owner, this user, could have filled. */
function refuseUnsafe(dir: string, st: Stats): void {
  if (st.isSymbolicLink()) throw new UnsafeDirectoryError(dir, 'it is a symbolic link');
  if (!st.isDirectory()) throw new UnsafeDirectoryError(dir, 'it is not a directory');
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new UnsafeDirectoryError(dir, `it is owned by uid ${st.uid}, not by us (uid ${uid})`);
  const mode = st.mode & 0o7777;
  if (mode & 0o022) throw new UnsafeDirectoryError(dir, `it is writable by group or others (mode ${mode.toString(8).padStart(4, '0')})`);
}

/**
 * For a reader of what the host keeps in `dirs` (outermost first): throws UnsafeDirectoryError when one that exists
 * is one the host would refuse to write in (see checkPrivate), since what is in it may have been planted: a VM record
 * names the plugin the host starts to act on the VM. Missing ones pass (nothing to read). Synchronous: two lstat calls,
 * where the thread pool would cost a call by reference a wake-up each (FileStateStore.get).
 */
export function refuseUnsafeToRead(...dirs: string[]): void {
  for (const dir of dirs) {
    let st: Stats;
    try {
      st = lstatSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    refuseUnsafe(dir, st);
  }
}

/**
 * Lets the members of group `gid` pass through a private directory of ours (0710, owned by that group), or, with no
 * group, makes it 0700 again. The group is given the directory before its mode lets a group in, so no other group
 * ever could pass. What it holds stays 0700/0600 unless made otherwise on purpose (the daemon's socket and lock).
 */
export async function shareWithGroup(dir: string, gid: number | undefined): Promise<void> {
  await checkPrivate(dir);
  if (gid === undefined) return chmod(dir, 0o700);
  await chown(dir, -1, gid);
  await chmod(dir, GROUP_PASSES);
}

/**
 * The nearest directory above `dir` that a member of group `gid` (not its owner) cannot pass through by its mode:
 * undefined when every one lets the group or everyone pass. An ACL can say otherwise; the mode is what this reads.
 */
export async function closedToGroup(dir: string, gid: number): Promise<{ dir: string; mode: number } | undefined> {
  for (let up = dirname(dir); ; up = dirname(up)) {
    // Followed: a symlink on the way (/var/run) is passed as its target lets it be.
    const st = await stat(up);
    const mode = st.mode & 0o7777;
    if (!(mode & 0o001 || (st.gid === gid && mode & 0o010))) return { dir: up, mode };
    if (up === dirname(up)) return undefined;
  }
}

async function mkdirChecked(dir: string): Promise<void> {
  try {
    await mkdir(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  await checkPrivate(dir);
}

/**
 * Private to the user: VM records and sockets are nobody else's business. `base` (default `dir`) and every
 * directory from it down to `dir` is created 0700 or, if it exists, checked (see checkPrivate). What lies
 * above `base` (/tmp, the XDG runtime or state home) is made if missing and not checked: it is not ours.
 */
export async function ensurePrivateDir(dir: string, base = dir): Promise<string> {
  const below = relative(base, dir);
  if (below.startsWith('..') || isAbsolute(below)) throw new Error(`${dir} is not inside ${base}`);
  await mkdir(dirname(base), { recursive: true, mode: 0o700 });
  let current = base;
  await mkdirChecked(current);
  for (const part of below.split(sep).filter(Boolean)) {
    current = join(current, part);
    await mkdirChecked(current);
  }
  return dir;
}
