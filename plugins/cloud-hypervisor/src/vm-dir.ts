// A VM's directory on disk, apart from any live ChVm: claimed for a new VM (refused while a VMM still
// answers there), and cleaned up for a VM this process does not know (vm/delete after a restart).
import { mkdir, rm } from 'node:fs/promises';
import { errors, proc } from 'hvplug/plugin-sdk';
import { CloudHypervisorClient } from './api-client.js';
import { killVmm } from './launcher.js';
import type { VmPaths } from './paths.js';
import { parseState, readStateFile } from './state.js';

async function answers(paths: VmPaths): Promise<boolean> {
  const client = new CloudHypervisorClient({ socketPath: paths.socket, timeoutMs: 1_000 });
  return client.ping().then(
    () => true,
    () => false,
  );
}

async function recordedVmm(paths: VmPaths, vmId: string): Promise<{ pid: number; startTicks?: number } | undefined> {
  const st = parseState(await readStateFile(paths), vmId);
  if (typeof st === 'string' || st.pid === null) return undefined;
  const startTicks = st.startTicks ?? undefined;
  return proc.isRunning(st.pid, startTicks) ? { pid: st.pid, startTicks } : undefined;
}

/** A fresh, private directory for a new VM; AlreadyExists while a VMM of that id still runs there. */
export async function claimDir(paths: VmPaths, vmId: string): Promise<void> {
  if ((await recordedVmm(paths, vmId)) || (await answers(paths))) throw errors.alreadyExists(vmId);
  // Left over from a VM whose VMM is gone: nothing in it is worth keeping.
  await rm(paths.dir, { recursive: true, force: true });
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
}

/** Shuts down whatever VMM the directory records or answers on its socket, then removes the directory. */
export async function removeOrphan(paths: VmPaths, vmId: string): Promise<void> {
  const vmm = await recordedVmm(paths, vmId);
  if (vmm || (await answers(paths))) {
    await new CloudHypervisorClient({ socketPath: paths.socket, timeoutMs: 2_000 }).shutdownVmm().catch(() => undefined);
    const end = Date.now() + 3_000;
    while (vmm && proc.isRunning(vmm.pid, vmm.startTicks) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    if (vmm) killVmm(vmm.pid, vmm.startTicks);
  }
  await rm(paths.dir, { recursive: true, force: true });
}
