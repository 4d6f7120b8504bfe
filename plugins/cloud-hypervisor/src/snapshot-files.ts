// What the plugin adds to and changes in a Cloud Hypervisor snapshot directory. A sidecar file records
// the hvplug side of the VM (devices, agent vsock, the directory it ran in). On restore, paths inside the
// old VM's directory (serial log, vsock sockets) are moved to the new VM's, in config.json, the VmConfig
// the VMM re-creates devices from: the old directory is usually gone, or still in use by the source VM.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Device } from 'hvplug/protocol';
import type { AgentVsock } from './config-map.js';
import { isJsonObject, type Json } from './json.js';

export const SIDECAR = 'hvplug-snapshot.json';
const CH_CONFIG = 'config.json';

export interface Sidecar {
  readonly format: 1;
  readonly vmId: string;
  readonly dir: string;
  readonly devices: Device[];
  readonly agent: AgentVsock | null;
  readonly bootMemoryMiB: number;
}

export async function writeSidecar(dir: string, s: Sidecar): Promise<void> {
  await writeFile(join(dir, SIDECAR), JSON.stringify(s), { mode: 0o600 });
}

/** The sidecar of an unpacked snapshot, or why there is none. */
export async function readSidecar(dir: string): Promise<Sidecar | string> {
  const text = await readFile(join(dir, SIDECAR), 'utf8').catch(() => undefined);
  if (text === undefined) return `the snapshot has no ${SIDECAR}: it was not written by this plugin's vm/save`;
  let raw: Json;
  try {
    raw = JSON.parse(text) as Json;
  } catch {
    return `${SIDECAR} is not JSON`;
  }
  if (!isJsonObject(raw) || raw.format !== 1 || typeof raw.dir !== 'string' || typeof raw.vmId !== 'string' || !Array.isArray(raw.devices)) {
    return `${SIDECAR} is not in a format this plugin knows`;
  }
  const devices = raw.devices.map((d) => Device.safeParse(d));
  if (devices.some((d) => !d.success)) return `${SIDECAR} lists a malformed device`;
  const a = isJsonObject(raw.agent) ? raw.agent : undefined;
  const agent = a && typeof a.socket === 'string' && typeof a.cid === 'number' && typeof a.port === 'number' ? { socket: a.socket, cid: a.cid, port: a.port } : null;
  return {
    format: 1,
    vmId: raw.vmId,
    dir: raw.dir,
    devices: devices.flatMap((d) => (d.success ? [d.data] : [])),
    agent,
    bootMemoryMiB: typeof raw.bootMemoryMiB === 'number' ? raw.bootMemoryMiB : 0,
  };
}

/** `value` with every string naming `from` or a path below it re-rooted at `to`. */
export function moveRoot<T extends Json>(value: T, from: string, to: string): T {
  const move = (v: Json): Json => {
    if (typeof v === 'string') return v === from || v.startsWith(`${from}/`) ? to + v.slice(from.length) : v;
    if (Array.isArray(v)) return v.map(move);
    if (isJsonObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, move(x)]));
    return v;
  };
  return move(value) as T;
}

/** Re-roots the paths of the snapshot's config.json; answers the rewritten CH config. */
export async function relocateConfig(dir: string, from: string, to: string): Promise<Json> {
  const path = join(dir, CH_CONFIG);
  const config = moveRoot(JSON.parse(await readFile(path, 'utf8')) as Json, from, to);
  await writeFile(path, JSON.stringify(config), { mode: 0o600 });
  return config;
}
