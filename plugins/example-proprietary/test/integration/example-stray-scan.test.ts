// The scan for a VM's stray guests (vm/start, vm/delete, vm/recover of an unknown VM) against real processes in /proc.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { proc } from 'hvplug/plugin-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { Guest } from '../../src/guest.js';
import { GUEST_TITLE } from '../../src/guest-program.js';
import { endStrayGuests, findGuest, identityOf } from '../../src/guest-record.js';

const started: number[] = [];
const guests: Guest[] = [];
const dirs: string[] = [];

/** A process /proc shows as a guest of the VM with this agent socket (title and socket on its command line). */
async function guestLike(vmId: string, agentPath: string): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', GUEST_TITLE, vmId, agentPath], { detached: true, stdio: 'ignore' });
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error('no pid');
  started.push(pid);
  // Its command line is node's own until exec: wait for the script's.
  for (let i = 0; i < 200 && !(proc.cmdline(pid) ?? []).includes(GUEST_TITLE); i++) await new Promise((r) => setTimeout(r, 10));
  return pid;
}

/** A scratch directory and the agent socket path of a VM there. */
async function vmDir(): Promise<{ dir: string; agentPath: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'hvplug-stray-scan-'));
  dirs.push(dir);
  return { dir, agentPath: join(dir, 'agent.sock') };
}

/** Watches `pid` as this plugin process watches a guest it re-attached. */
function watch(pid: number, dir: string): Guest {
  const identity = identityOf(pid);
  if (!identity) throw new Error(`no identity for ${pid}`);
  const guest = Guest.attach(identity, join(dir, 'console.log'), true);
  guests.push(guest);
  return guest;
}

afterEach(async () => {
  for (const g of guests.splice(0)) g.detach();
  for (const pid of started.splice(0)) if (proc.isAlive(pid)) process.kill(pid, 'SIGKILL');
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('example plugin: the scan for stray guests', () => {
  it("passes over the guests this process watches: they are other VMs' (a scan read every one's command line, at 1,000 VMs a start read 1,000 files)", async () => {
    const { dir, agentPath } = await vmDir();
    // Watched as the guest of a VM of this process, though its command line names this agent socket too: the scan
    // must not even look at it.
    const watchedPid = await guestLike('vm-watched', agentPath);
    watch(watchedPid, dir);
    const strayPid = await guestLike('vm-stray', agentPath);

    expect((await findGuest(dir, agentPath))?.pid).toBe(strayPid);
    await endStrayGuests(agentPath);
    expect(proc.isAlive(strayPid)).toBe(false);
    expect(proc.isAlive(watchedPid)).toBe(true);
  });

  it('finds a guest again once this process stops watching it (detach)', async () => {
    const { dir, agentPath } = await vmDir();
    const pid = await guestLike('vm-detached', agentPath);
    watch(pid, dir).detach();
    expect((await findGuest(dir, agentPath))?.pid).toBe(pid);
    await endStrayGuests(agentPath);
    expect(proc.isAlive(pid)).toBe(false);
  });
});
