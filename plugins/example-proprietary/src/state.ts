import { Device, toIssues, VmStatus, type Issue } from 'hvplug/protocol';
import { isObject, toJson, type Json } from './json.js';
import type { ProcessIdentity } from './proc.js';

export const STATE_FORMAT = 'hvplug-example/vm-state';
export const STATE_VERSION = 1;

export interface ExitRecord {
  code: number | null;
  signal: string | null;
  reason: string;
}

/**
 * The opaque `state` this plugin hands the host after every change, and gets back in vm/recover from
 * a plugin process that has never seen the VM: enough to find the guest again, to make sure it is
 * the same process and not a recycled pid, and to answer for the VM as before.
 */
export interface VmState {
  format: typeof STATE_FORMAT;
  version: typeof STATE_VERSION;
  status: VmStatus;
  /** The guest process, while there is one: pid, /proc start time and boot id. */
  guest: ProcessIdentity | null;
  /** The per-VM runtime directory and what is in it. */
  dir: string;
  consolePath: string;
  agentSocketPath: string;
  /** Online vCPUs and memory now (after resizes), which the config alone does not say. */
  vcpus: number;
  memoryMiB: number;
  /** The devices attached now, cold and hot. */
  devices: Device[];
  lastExit: ExitRecord | null;
}

export function encodeState(state: VmState): Json {
  return toJson(state);
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const isString = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** The state back from the host, or what is wrong with it (paths under `state`). */
export function decodeState(raw: Json): VmState | Issue[] {
  const bad = (path: (string | number)[], message: string): Issue[] => [{ path: ['state', ...path], message }];
  if (!isObject(raw)) return bad([], 'is not a state this plugin returned (not an object)');
  if (raw.format !== STATE_FORMAT) return bad(['format'], `must be ${STATE_FORMAT}`);
  if (raw.version !== STATE_VERSION) return bad(['version'], `version ${String(raw.version)} is not one this plugin reads (${STATE_VERSION})`);
  const status = VmStatus.safeParse(raw.status);
  if (!status.success) return bad(['status'], 'is not a VM status');
  const g = raw.guest;
  if (g !== null && !(isObject(g) && isInt(g.pid) && g.pid > 0 && isInt(g.startTime) && isString(g.bootId))) {
    return bad(['guest'], 'must be null or { pid, startTime, bootId }');
  }
  for (const field of ['dir', 'consolePath', 'agentSocketPath'] as const) {
    if (!isString(raw[field]) || !raw[field].startsWith('/')) return bad([field], 'must be an absolute path');
  }
  for (const field of ['vcpus', 'memoryMiB'] as const) if (!isInt(raw[field])) return bad([field], 'must be a whole number');
  const devices = Device.array().safeParse(raw.devices);
  if (!devices.success) return toIssues(devices.error).map((i) => ({ ...i, path: ['state', 'devices', ...i.path] }));
  const e = raw.lastExit;
  if (e !== null && !(isObject(e) && typeof e.reason === 'string')) return bad(['lastExit'], 'must be null or { code, signal, reason }');
  return {
    format: STATE_FORMAT,
    version: STATE_VERSION,
    status: status.data,
    guest: g === null ? null : { pid: Number(g.pid), startTime: Number(g.startTime), bootId: String(g.bootId) },
    dir: String(raw.dir),
    consolePath: String(raw.consolePath),
    agentSocketPath: String(raw.agentSocketPath),
    vcpus: Number(raw.vcpus),
    memoryMiB: Number(raw.memoryMiB),
    devices: devices.data,
    lastExit:
      e === null
        ? null
        : {
            code: typeof e.code === 'number' ? e.code : null,
            signal: typeof e.signal === 'string' ? e.signal : null,
            reason: String(e.reason),
          },
  };
}
