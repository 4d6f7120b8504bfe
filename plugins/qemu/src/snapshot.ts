// Snapshots on QEMU 7.2: `migrate exec:` into a file and `migrate-incoming exec:` out of it, plus a
// sidecar JSON with what the receiving QEMU must have on its command line (devices and CPUs hot-plugged
// before the save, same ids and buses), which the snapshot itself does not describe.
import { open, readFile } from 'node:fs/promises';
import { PluginError, errors } from 'hvplug/plugin-sdk';
import { formatIssues, toIssues } from 'hvplug/protocol';
import type { Attached } from './device-map.js';
import { vmmCall } from './errors.js';
import type { QmpClient } from './qmp.js';
import { SnapshotSidecar, type LaunchInfo } from './state.js';

export interface Snapshot {
  readonly launch: LaunchInfo;
  readonly attached: Attached[];
  readonly vcpus: number;
  readonly memoryMiB: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** sh -c runs QEMU's exec: migration; single quotes keep the path one word whatever it holds. */
const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
/**
 * Not `${path}.hvplug.json`, which it was: `hvplug save` writes its own description of the saved VM under that name,
 * after vm/save, so a snapshot saved through the CLI had lost this one and its restore failed.
 */
const sidecarOf = (path: string): string => `${path}.qemu.json`;
const legacySidecarOf = (path: string): string => `${path}.hvplug.json`;

/**
 * Creates (or truncates) `path` as 0600 before anything is written to it: a snapshot is guest RAM, and QEMU's
 * `cat >` would create it with QEMU's umask (0644 seen). chmod covers a file that existed with a wider mode.
 */
async function openPrivate(path: string): Promise<Awaited<ReturnType<typeof open>>> {
  const fh = await open(path, 'w', 0o600);
  try {
    await fh.chmod(0o600);
  } catch (err) {
    await fh.close();
    throw err;
  }
  return fh;
}

export async function writeSidecar(path: string, snap: Snapshot): Promise<void> {
  const fh = await openPrivate(sidecarOf(path));
  try {
    await fh.writeFile(JSON.stringify(snap));
  } finally {
    await fh.close();
  }
}

async function readJson(file: string): Promise<{ found: false } | { found: true; value: unknown; error?: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { found: false };
    return { found: true, value: undefined, error: (err as Error).message };
  }
  try {
    return { found: true, value: JSON.parse(text) };
  } catch (err) {
    return { found: true, value: undefined, error: (err as Error).message };
  }
}

/**
 * The sidecar of a snapshot, or undefined when the snapshot came without one (then the config says it all). One that
 * is there but is not a sidecar is an error naming it. Under the name this plugin used before, a file that is not
 * its sidecar is `hvplug save`'s own, and the snapshot is taken as one without a sidecar.
 */
export async function readSidecar(path: string): Promise<Snapshot | undefined> {
  const file = sidecarOf(path);
  const own = await readJson(file);
  if (own.found) {
    const parsed = own.error === undefined ? SnapshotSidecar.safeParse(own.value) : undefined;
    if (parsed?.success) return parsed.data;
    const why = own.error ?? (parsed && !parsed.success ? formatIssues(toIssues(parsed.error)) : 'unreadable');
    throw errors.invalidConfig([{ path: ['path'], message: `the snapshot's sidecar ${file} is not one: ${why}` }]);
  }
  const legacy = await readJson(legacySidecarOf(path));
  if (!legacy.found || legacy.error !== undefined) return undefined;
  const parsed = SnapshotSidecar.safeParse(legacy.value);
  return parsed.success ? parsed.data : undefined;
}

/** Writes a stopped VM's state to `path`; cancellable. */
export async function migrateToFile(qmp: QmpClient, path: string, signal: AbortSignal): Promise<void> {
  await (await openPrivate(path)).close();
  await vmmCall(() => qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(path)}` }));
  for (;;) {
    const info = (await vmmCall(() => qmp.execute('query-migrate'))) as { status?: string; 'error-desc'?: string };
    if (info.status === 'completed') return;
    if (info.status === 'failed' || info.status === 'cancelled') throw errors.vmmFailure(`migrate to ${path}: ${info.status}: ${info['error-desc'] ?? ''}`);
    if (signal.aborted) {
      await qmp.execute('migrate_cancel').catch(() => undefined);
      throw new PluginError('Cancelled', 'vm/save cancelled');
    }
    await sleep(50);
  }
}

/** Loads `path` into a QEMU started with -incoming defer, and leaves it stopped. */
export async function loadFromFile(qmp: QmpClient, path: string): Promise<void> {
  await vmmCall(() => qmp.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(path)}` }));
  for (;;) {
    const st = (await vmmCall(() => qmp.execute('query-status'))) as { status: string; running: boolean };
    if (st.status !== 'inmigrate') {
      if (st.status !== 'paused' && st.status !== 'running') throw errors.vmmFailure(`restore from ${path} ended in QEMU state ${st.status}`);
      // A snapshot of a stopped VM loads stopped; a restored VM is handed back paused in any case.
      if (st.running) await vmmCall(() => qmp.execute('stop'));
      return;
    }
    await sleep(50);
  }
}
