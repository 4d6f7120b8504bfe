import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
// A namespace import lets esbuild keep only the zod a plugin uses.
import * as z from 'zod/mini';
import { VmConfig } from 'hvplug/protocol';
import { proc } from 'hvplug/plugin-sdk';
import { errnoOf, invalidParams } from './errors.js';

export const SNAPSHOT_FORMAT = 'hvplug-example/snapshot';
export const SNAPSHOT_VERSION = 1;

/** What a saved VM is: its config with the devices it had, its size, and its guest's counter. */
const Snapshot = z.object({
  format: z.literal(SNAPSHOT_FORMAT),
  version: z.literal(SNAPSHOT_VERSION),
  vmId: z.string(),
  savedAt: z.string(),
  config: VmConfig,
  vcpus: z.int(),
  memoryMiB: z.int(),
  /** The counter value the guest prints next: where the restored guest carries on. */
  nextTick: z.int(),
});
export type Snapshot = z.output<typeof Snapshot>;

/** Written whole or not at all: a temp file, fsync, rename. Answers the file's size. */
export async function writeSnapshot(path: string, snap: Snapshot): Promise<number> {
  await mkdir(dirname(path), { recursive: true });
  // From /dev/urandom (proc.randomUuid): node:crypto would stay loaded in the plugin for one temp name.
  const tmp = `${path}.${proc.randomUuid()}.tmp`;
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
  const parsed = Snapshot.safeParse(doc);
  if (parsed.success) return parsed.data;
  // The first field that does not fit names what is wrong: the format before anything else.
  const field = parsed.error.issues[0]?.path[0];
  const what = field === 'version' ? `version ${String((doc as { version?: unknown }).version)}` : String(field ?? 'format');
  throw invalidParams('vm/restore', ['path'], `${path} is not a snapshot of this plugin (${what})`);
}
