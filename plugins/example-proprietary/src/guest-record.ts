import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GUEST_TITLE } from './guest-program.js';
import { isObject } from './json.js';
import { identityOf, isRunning, processesWhoseCmdline, type ProcessIdentity } from './proc.js';

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

/**
 * The guest of a VM: the one its record names while that one runs, else the one /proc shows with the VM's agent
 * socket on its command line (its argv, then its title). A plugin killed between spawning a guest and writing its
 * record leaves a guest that only /proc knows, and a VM deleted without it would leave it running for good.
 */
export async function findGuest(dir: string, agentSocketPath: string): Promise<ProcessIdentity | undefined> {
  const recorded = await readGuestRecord(dir);
  if (recorded && isRunning(recorded)) return recorded;
  const [pid] = processesWhoseCmdline((cmdline) => cmdline.includes(GUEST_TITLE) && cmdline.includes(` ${agentSocketPath}`));
  return (pid === undefined ? undefined : identityOf(pid)) ?? recorded;
}

/** How long a stray guest gets to be gone after SIGKILL before the call goes on regardless. */
const STRAY_REAP_MS = 2_000;

/**
 * Ends every guest /proc shows for this VM (its title and agent socket on the command line) except `keep`. Only
 * one guest may exist per VM; another is a leftover of a start cut short by a plugin's death (the spawn happened,
 * the record never said so), and a delete or a new start must not leave it running.
 */
export async function endStrayGuests(agentSocketPath: string, keep?: number): Promise<void> {
  const strays = processesWhoseCmdline((cmdline) => cmdline.includes(GUEST_TITLE) && cmdline.includes(` ${agentSocketPath}`)).filter((pid) => pid !== keep);
  for (const pid of strays) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  const deadline = Date.now() + STRAY_REAP_MS;
  while (strays.some((pid) => processesWhoseCmdline((c) => c.includes(` ${agentSocketPath}`)).includes(pid)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
}
