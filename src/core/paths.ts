import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir } from 'node:fs/promises';
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
 * Checks a directory the host created or found: a real directory (lstat, so a planted symlink is seen,
 * not followed), ours, and writable by nobody else. Someone else may have planted entries in a group- or
 * world-writable one, so it is refused even when ours; one only readable by others is tightened to 0700.
 */
async function checkPrivate(dir: string): Promise<void> {
  const st = await lstat(dir);
  if (st.isSymbolicLink()) throw new UnsafeDirectoryError(dir, 'it is a symbolic link');
  if (!st.isDirectory()) throw new UnsafeDirectoryError(dir, 'it is not a directory');
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new UnsafeDirectoryError(dir, `it is owned by uid ${st.uid}, not by us (uid ${uid})`);
  const mode = st.mode & 0o7777;
  if (mode & 0o022) throw new UnsafeDirectoryError(dir, `it is writable by group or others (mode ${mode.toString(8).padStart(4, '0')})`);
  if (mode & 0o077) await chmod(dir, 0o700);
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
