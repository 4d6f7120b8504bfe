// The opaque state blob: everything a new plugin process needs to take a VM back (vm/recover). The host
// stores it with the VM's record; the plugin also keeps a copy in the VM's directory, for a recover
// without a blob and for vm/delete of a VM this process never knew.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { Device, VmStatus } from 'hvplug/protocol';
import type { AgentVsock } from './config-map.js';
import { isJsonObject, toJson, type Json } from './json.js';
import type { VmPaths } from './paths.js';

export interface VmState {
  readonly v: 1;
  readonly vmId: string;
  /** The VM's directory; the socket, the events file and the rest are named from it (paths.ts). */
  readonly dir: string;
  readonly socket: string;
  readonly events: string;
  /** Where the events file has been read up to: a new process resumes there. */
  readonly eventsOffset: number;
  /** The VMM's pid and start time (USER_HZ ticks after boot): the pair names one process for good. */
  readonly pid: number | null;
  readonly startTicks: number | null;
  readonly status: VmStatus;
  readonly devices: Device[];
  readonly agent: AgentVsock | null;
  /** PCI addresses of hot-plugged devices, by id. */
  readonly bdfs: Record<string, string>;
  readonly bootMemoryMiB: number | null;
}

const num = (v: Json | undefined): number | null => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : null);
const str = (v: Json | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

/** The state a blob describes, or why it does not describe one. */
export function parseState(raw: Json | null | undefined, vmId: string, paths: VmPaths): VmState | string {
  if (!isJsonObject(raw)) return 'no state';
  if (raw.v !== 1) return `unknown state version ${JSON.stringify(raw.v)}`;
  if (raw.vmId !== vmId) return `the state is VM ${JSON.stringify(raw.vmId)}'s, not ${vmId}'s`;
  const status = VmStatus.safeParse(raw.status);
  if (!status.success) return `bad status ${JSON.stringify(raw.status)}`;
  const devices = Array.isArray(raw.devices) ? raw.devices.map((d) => Device.safeParse(d)) : [];
  if (devices.some((d) => !d.success)) return 'a device of the state is malformed';
  const agent = isJsonObject(raw.agent) ? raw.agent : null;
  const agentSocket = str(agent?.socket);
  const cid = num(agent?.cid ?? null);
  const port = num(agent?.port ?? null);
  const bdfs = isJsonObject(raw.bdfs) ? Object.fromEntries(Object.entries(raw.bdfs).filter((e): e is [string, string] => typeof e[1] === 'string')) : {};
  return {
    v: 1,
    vmId,
    dir: str(raw.dir) ?? paths.dir,
    socket: str(raw.socket) ?? paths.socket,
    events: str(raw.events) ?? paths.events,
    eventsOffset: num(raw.eventsOffset) ?? 0,
    pid: num(raw.pid),
    startTicks: num(raw.startTicks),
    status: status.data,
    devices: devices.flatMap((d) => (d.success ? [d.data] : [])),
    agent: agentSocket && cid !== null && port !== null ? { socket: agentSocket, cid, port } : null,
    bdfs,
    bootMemoryMiB: num(raw.bootMemoryMiB),
  };
}

/** Written to a temporary file and renamed, so a crash never leaves half a state. */
export async function writeStateFile(paths: VmPaths, state: VmState): Promise<void> {
  const tmp = `${paths.stateFile}.tmp`;
  await writeFile(tmp, JSON.stringify(state), { mode: 0o600 });
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

export function stateJson(state: VmState): Json {
  return toJson(state);
}
