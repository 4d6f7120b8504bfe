import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { VmConfig } from 'hvplug/protocol';
import { errnoOf, invalidParams } from './failures.js';
import { isObject } from './json.js';

export const SNAPSHOT_FORMAT = 'hvplug-example/snapshot';
export const SNAPSHOT_VERSION = 1;

/** What a saved VM is: its config with the devices it had, its size, and its guest's counter. */
export interface Snapshot {
  format: typeof SNAPSHOT_FORMAT;
  version: typeof SNAPSHOT_VERSION;
  vmId: string;
  savedAt: string;
  config: VmConfig;
  vcpus: number;
  memoryMiB: number;
  /** The counter value the guest prints next: where the restored guest carries on. */
  nextTick: number;
}

/** Written whole or not at all: a temp file, fsync, rename. Answers the file's size. */
export async function writeSnapshot(path: string, snap: Snapshot): Promise<number> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomUUID()}.tmp`;
  const body = Buffer.from(`${JSON.stringify(snap, null, 2)}\n`);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(body);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return body.length;
}

export async function readSnapshot(path: string): Promise<Snapshot> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    const why = errnoOf(err) === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw invalidParams('vm/restore', ['path'], `${path} is not a readable snapshot: ${why}`);
  }
  const notOurs = (what: string): Error => invalidParams('vm/restore', ['path'], `${path} is not a snapshot of this plugin (${what})`);
  if (!isObject(doc) || doc.format !== SNAPSHOT_FORMAT) throw notOurs('format');
  if (doc.version !== SNAPSHOT_VERSION) throw notOurs(`version ${String(doc.version)}`);
  const config = VmConfig.safeParse(doc.config);
  if (!config.success) throw notOurs('config');
  for (const field of ['vcpus', 'memoryMiB', 'nextTick'] as const) {
    if (typeof doc[field] !== 'number' || !Number.isInteger(doc[field])) throw notOurs(field);
  }
  return {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    vmId: String(doc.vmId),
    savedAt: String(doc.savedAt),
    config: config.data,
    vcpus: Number(doc.vcpus),
    memoryMiB: Number(doc.memoryMiB),
    nextTick: Number(doc.nextTick),
  };
}
