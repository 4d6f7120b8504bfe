import { mkdir } from 'node:fs/promises';
import { homedir, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

/** --state-dir, else HVPLUG_STATE_DIR, else the XDG state home. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HVPLUG_STATE_DIR) return env.HVPLUG_STATE_DIR;
  const base = env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'hvplug');
}

/** Sockets and pidfiles: XDG_RUNTIME_DIR when there is one, else a per-user directory in tmp. */
export function defaultRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HVPLUG_RUNTIME_DIR) return env.HVPLUG_RUNTIME_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'hvplug');
  return join(tmpdir(), `hvplug-${userInfo().uid}`);
}

/** Private to the user: VM records and sockets are nobody else's business. */
export async function ensurePrivateDir(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}
