// The opaque state handed to the host after every change and given back in vm/recover to a plugin
// process that never saw the VM: enough to find the QEMU again (pid, runtime dir, QMP socket; attachQemu
// checks the pid really is that QEMU) and to answer for the VM as before (launch facts, devices).
import type { ResultInputOf, VmStatus } from 'hvplug/protocol';
import { VM_STATUSES } from 'hvplug/protocol';
import type { Accel } from './accel.js';
import type { MachineType } from './cmdline.js';
import type { Attached } from './devices.js';

/** A JSON value, as the protocol's opaque state field carries it. */
export type Json = Exclude<ResultInputOf<'vm/create'>['state'], undefined>;

export const STATE_FORMAT = 'hvplug-qemu/vm-state';
export const STATE_VERSION = 1;

/** What QEMU is launched with, fixed at create: a restore re-launches with the same. */
export interface LaunchInfo {
  machine: MachineType;
  accel: Accel;
  accelReason: string;
  kernel: string;
  initrd?: string;
  cmdline: string;
  vcpusBoot: number;
  vcpusMax: number;
  memory: { sizeMiB: number; maxMiB?: number; slots?: number };
  hotplugRootPorts: number;
  cpuModel?: string;
  extraArgs: string[];
}

export interface ExitRecord {
  code: number | null;
  signal: string | null;
  reason: string;
}

export interface VmState {
  format: typeof STATE_FORMAT;
  version: typeof STATE_VERSION;
  status: VmStatus;
  runDir: string;
  /** Relative to runDir (QEMU's cwd), which keeps it under sun_path's 107 bytes. */
  qmpSocket: string;
  consoleLog: string;
  pid: number | null;
  launch: LaunchInfo;
  vcpus: number;
  memoryMiB: number;
  attached: Attached[];
  startedAt: number | null;
  lastExit: ExitRecord | null;
}

/** Through JSON and back: what the host stores is exactly what we hand over. */
export function toJson(value: unknown): Json {
  return JSON.parse(JSON.stringify(value)) as Json;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The state back from the host, or why it is not one this plugin wrote. */
export function decodeState(raw: unknown): VmState | string {
  if (!isObj(raw)) return 'state is not an object';
  if (raw.format !== STATE_FORMAT || raw.version !== STATE_VERSION) return `state is not ${STATE_FORMAT} version ${STATE_VERSION}`;
  if (typeof raw.status !== 'string' || !(VM_STATUSES as readonly string[]).includes(raw.status)) return 'state.status is not a VM status';
  if (typeof raw.runDir !== 'string' || !raw.runDir.startsWith('/')) return 'state.runDir must be an absolute path';
  if (typeof raw.qmpSocket !== 'string' || typeof raw.consoleLog !== 'string') return 'state.qmpSocket and state.consoleLog must be strings';
  if (raw.pid !== null && !(typeof raw.pid === 'number' && Number.isInteger(raw.pid) && raw.pid > 0)) return 'state.pid must be null or a pid';
  if (!isObj(raw.launch) || typeof raw.launch.kernel !== 'string') return 'state.launch is missing';
  if (!Array.isArray(raw.attached)) return 'state.attached must be an array';
  // The rest was written by this plugin in the same format version; its shape is ours to trust.
  return raw as unknown as VmState;
}
