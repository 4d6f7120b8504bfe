// The opaque state blob: everything a new plugin process needs to take a VM back (vm/recover). The host
// stores it with the VM's record; the plugin also keeps a copy in the VM's directory, for a recover
// without a blob and for vm/delete of a VM this process never knew.
import { readFile, rename, writeFile } from 'node:fs/promises';
// A namespace import lets esbuild keep only the zod a plugin uses (`import { z }` pulls in all of it, locales too).
import * as z from 'zod/mini';
import { stateCodec } from 'hvplug/plugin-sdk';
import { AbsPath, Device, formatIssues, VmStatus } from 'hvplug/protocol';
import type { Json } from './json.js';
import type { VmPaths } from './paths.js';

export const vmState = stateCodec('hvplug-cloud-hypervisor/vm-state', 1, {
  vmId: z.string(),
  /** The VM's directory; the socket, the events file and the rest are named from it (paths.ts). */
  dir: AbsPath,
  /**
   * Where the events file had been read up to when the state was handed out: every event before it that changes
   * the state is in it. A new process reads on from there (a catch-up: removals applied, no status announced), so
   * events that change the status alone (pause, resume) need not move it, and do not (vm.ts, statusResult).
   */
  eventsOffset: z.number().check(z.int(), z.nonnegative()),
  /** The VMM's pid and start time (USER_HZ ticks after boot): the pair names one process for good. */
  pid: z.nullable(z.number().check(z.int(), z.positive())),
  startTicks: z.nullable(z.number().check(z.int(), z.nonnegative())),
  /** A live VM (running or paused) is written `running` (stateStatus): vm/recover asks vm.info which. */
  status: VmStatus,
  devices: z.array(Device),
  agent: z.nullable(z.object({ socket: AbsPath, cid: z.number().check(z.int(), z.nonnegative()), port: z.number().check(z.int(), z.nonnegative()) })),
  /** PCI addresses of hot-plugged devices, by id. */
  bdfs: z.record(z.string(), z.string()),
  bootMemoryMiB: z.nullable(z.number().check(z.int(), z.positive())),
});
export type VmState = ReturnType<typeof vmState.decode>;

/** The state a blob describes, or why it does not describe one of this VM. */
export function parseState(raw: unknown, vmId: string): VmState | string {
  if (raw === undefined || raw === null) return 'no state';
  const decoded = vmState.safeDecode(raw);
  if (!decoded.ok) return formatIssues(decoded.issues);
  if (decoded.state.vmId !== vmId) return `the state is VM ${JSON.stringify(decoded.state.vmId)}'s, not ${vmId}'s`;
  return decoded.state;
}

/** Written to a temporary file and renamed, so a crash never leaves half a state. */
export async function writeStateFile(paths: VmPaths, state: VmState): Promise<void> {
  const tmp = `${paths.stateFile}.tmp`;
  await writeFile(tmp, JSON.stringify(vmState.encode(state)), { mode: 0o600 });
  await rename(tmp, paths.stateFile);
}

export async function readStateFile(paths: VmPaths): Promise<Json | undefined> {
  const text = await readFile(paths.stateFile, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as Json;
  } catch {
    return undefined;
  }
}
