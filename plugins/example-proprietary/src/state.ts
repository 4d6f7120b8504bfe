// A namespace import lets esbuild keep only the zod a plugin uses (`import { z }` pulls in all of it, locales too).
import * as z from 'zod/mini';
import { stateCodec } from 'hvplug/plugin-sdk';
import { AbsPath, Device, VmStatus } from 'hvplug/protocol';
import { ProcessIdentity } from './guest-record.js';

const ExitRecord = z.object({ code: z.nullable(z.number().check(z.int())), signal: z.nullable(z.string()), reason: z.string() });
export type ExitRecord = z.infer<typeof ExitRecord>;

/**
 * The opaque `state` this plugin hands the host after every change, and gets back in vm/recover from
 * a plugin process that has never seen the VM: enough to find the guest again, to make sure it is
 * the same process and not a recycled pid, and to answer for the VM as before.
 */
export const vmState = stateCodec('hvplug-example/vm-state', 1, {
  status: VmStatus,
  /** The guest process, while there is one: pid, /proc start time and boot id. */
  guest: z.nullable(ProcessIdentity),
  /** The per-VM runtime directory and what is in it. */
  dir: AbsPath,
  consolePath: AbsPath,
  agentSocketPath: AbsPath,
  /** Online vCPUs and memory now (after resizes), which the config alone does not say. */
  vcpus: z.number().check(z.int(), z.nonnegative()),
  memoryMiB: z.number().check(z.int(), z.nonnegative()),
  /** The devices attached now, cold and hot. */
  devices: z.array(Device),
  lastExit: z.nullable(ExitRecord),
});
export type VmState = ReturnType<typeof vmState.decode>;
