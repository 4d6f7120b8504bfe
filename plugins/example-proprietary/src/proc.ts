import { readdirSync, readFileSync } from 'node:fs';

/**
 * Reading /proc: the guest is not necessarily our child (after vm/recover it belongs to init), so
 * /proc is the one view of it that works the same whoever started it.
 */

/** Linux reports process times in USER_HZ, which is 100 on every architecture's user-space ABI. */
export const CLOCK_TICKS_PER_SECOND = 100;

export interface ProcStat {
  /** R, S, D, T (stopped by a signal), t, Z (zombie), X ... */
  state: string;
  ppid: number;
  pgrp: number;
  utimeTicks: number;
  stimeTicks: number;
  threads: number;
  /** Clock ticks after boot at which the process started: with the boot id, what tells a recycled pid apart. */
  startTime: number;
}

/** pid, start time and boot: a process's identity across pid reuse and host reboots. */
export interface ProcessIdentity {
  pid: number;
  startTime: number;
  bootId: string;
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function readStat(pid: number): ProcStat | undefined {
  const text = read(`/proc/${pid}/stat`);
  if (text === undefined) return undefined;
  // The command name (field 2) may hold spaces and parentheses; the fixed fields follow the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const at = (field: number): number => Number(f[field - 3]);
  return {
    state: f[0] ?? '?',
    ppid: at(4),
    pgrp: at(5),
    utimeTicks: at(14),
    stimeTicks: at(15),
    threads: at(20),
    startTime: at(22),
  };
}

let cachedBootId: string | undefined;

export function bootId(): string {
  cachedBootId ??= (read('/proc/sys/kernel/random/boot_id') ?? 'unknown').trim();
  return cachedBootId;
}

export function identityOf(pid: number): ProcessIdentity | undefined {
  const stat = readStat(pid);
  return stat && { pid, startTime: stat.startTime, bootId: bootId() };
}

/** The process's stat, when the process with this identity exists and has not exited (a zombie has exited, it only awaits its reaper). */
export function liveStat(id: ProcessIdentity): ProcStat | undefined {
  if (id.bootId !== bootId()) return undefined;
  const stat = readStat(id.pid);
  return stat !== undefined && stat.startTime === id.startTime && stat.state !== 'Z' && stat.state !== 'X' ? stat : undefined;
}

export function isRunning(id: ProcessIdentity): boolean {
  return liveStat(id) !== undefined;
}

/** Stopped by SIGSTOP (T), or by a tracer (t). */
export const stoppedState = (state: string | undefined): boolean => state === 'T' || state === 't';

export function isStopped(pid: number): boolean {
  return stoppedState(readStat(pid)?.state);
}

/** Live processes whose command line (NULs read as spaces) passes the test, lowest pid first. */
export function processesWhoseCmdline(test: (cmdline: string) => boolean): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = read(`/proc/${entry}/cmdline`);
    if (cmdline === undefined || !test(cmdline.replaceAll('\0', ' '))) continue;
    const state = readStat(Number(entry))?.state;
    if (state !== undefined && state !== 'Z' && state !== 'X') out.push(Number(entry));
  }
  return out.sort((a, b) => a - b);
}

/** Thread ids, the main thread (tid = pid) first, then in creation order as far as tids tell. */
export function threadIds(pid: number): number[] {
  try {
    const tids = readdirSync(`/proc/${pid}/task`).map(Number).filter((t) => Number.isInteger(t) && t !== pid);
    return [pid, ...tids.sort((a, b) => a - b)];
  } catch {
    return [];
  }
}

/** /proc/<pid>/status as key → first number of the value (kB for the Vm* keys). */
export function readStatusNumbers(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of (read(`/proc/${pid}/status`) ?? '').split('\n')) {
    const colon = line.indexOf(':');
    const value = Number.parseInt(line.slice(colon + 1).trim(), 10);
    if (colon > 0 && Number.isFinite(value)) out.set(line.slice(0, colon), value);
  }
  return out;
}

export function systemUptimeMs(): number {
  return Number.parseFloat(read('/proc/uptime') ?? '0') * 1000;
}
