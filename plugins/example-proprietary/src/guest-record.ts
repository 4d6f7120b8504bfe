import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isObject } from './json.js';
import type { ProcessIdentity } from './proc.js';

/**
 * The guest's identity, also kept next to it in the VM's runtime directory (a pidfile, as VMMs write).
 * The host's copy of the state can be one step behind: a host that dies between sending vm/start and
 * storing its answer holds a state without the guest. vm/recover then finds the guest here rather than
 * leaving it running unknown to anyone.
 */
const FILE = 'guest.json';

export async function writeGuestRecord(dir: string, id: ProcessIdentity): Promise<void> {
  const tmp = join(dir, `.${FILE}.${process.pid}`);
  await writeFile(tmp, JSON.stringify(id));
  await rename(tmp, join(dir, FILE));
}

export async function readGuestRecord(dir: string): Promise<ProcessIdentity | undefined> {
  try {
    const doc: unknown = JSON.parse(await readFile(join(dir, FILE), 'utf8'));
    if (!isObject(doc) || typeof doc.pid !== 'number' || typeof doc.startTime !== 'number' || typeof doc.bootId !== 'string') return undefined;
    return { pid: doc.pid, startTime: doc.startTime, bootId: doc.bootId };
  } catch {
    return undefined;
  }
}
