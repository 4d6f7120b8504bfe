// What /proc says about a process: the one reader of it for the host, the SDK and the plugins; and the kernel's
// other cheap facts the host needs without loading a node module for them (a monotonic clock, random bytes).
import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';

/**
 * USER_HZ: the unit of /proc/<pid>/stat times. It is 100 on every Linux architecture node supports
 * (the kernel fixes it for userspace ABI reasons), and node has no sysconf to ask.
 */
export const USER_HZ = 100;

export interface ProcStat {
  /** R, S, D, Z (zombie), X (dead), T... */
  readonly state: string;
  readonly ppid: number;
  /** The process group: a process started detached leads its own (pgrp = pid). */
  readonly pgrp: number;
  /** utime + stime, in USER_HZ ticks. */
  readonly cpuTicks: number;
  /** Start time after boot, in USER_HZ ticks: with the pid, it names one process for good (pids are reused). */
  readonly startTicks: number;
  readonly threads: number;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** /proc/<pid>/stat, or undefined when there is no such process. */
export function readStat(pid: number): ProcStat | undefined {
  const text = readText(`/proc/${pid}/stat`);
  if (!text) return undefined;
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const n = (i: number): number => Number(f[i] ?? NaN);
  return { state: f[0] ?? '?', ppid: n(1), pgrp: n(2), cpuTicks: n(11) + n(12), startTicks: n(19), threads: n(17) };
}

/**
 * The process's stat while it runs (not a zombie) and is the one that started at `startTicks`, when given; else
 * undefined. One read of /proc for the identity check and what the caller wants to know next (its state, its CPU).
 */
export function runningStat(pid: number, startTicks?: number): ProcStat | undefined {
  const s = readStat(pid);
  if (!s || s.state === 'Z' || s.state === 'X') return undefined;
  return startTicks === undefined || s.startTicks === startTicks ? s : undefined;
}

/** The process runs (not a zombie) and is the one that started at `startTicks`, when given. */
export function isRunning(pid: number, startTicks?: number): boolean {
  return runningStat(pid, startTicks) !== undefined;
}

/** Alive means /proc has it and it is not a zombie waiting to be reaped. */
export function isAlive(pid: number): boolean {
  return isRunning(pid);
}

/**
 * Resolves once none of `pids` is alive (true), or after `ms` (false), looking every 20 ms. A SIGKILLed process is gone
 * only once the kernel has run its exit, which on a loaded machine can come a while after the signal.
 */
export async function outlived(pids: readonly number[], ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (!pids.some((pid) => isAlive(pid))) return true;
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The command line's arguments; empty for a zombie or a kernel thread, undefined when there is no such process. */
export function cmdline(pid: number): string[] | undefined {
  const text = readText(`/proc/${pid}/cmdline`);
  if (text === undefined) return undefined;
  return text.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
}

let bootIdCache: string | undefined;

/** This boot's id: a pid and start time name one process only within one boot of the host. */
export function bootId(): string {
  bootIdCache ??= (readText('/proc/sys/kernel/random/boot_id') ?? 'unknown').trim();
  return bootIdCache;
}

/** The process's thread ids, its main thread (tid = pid) first, then in creation order as far as tids tell; empty when it is gone. */
export function threadIds(pid: number): number[] {
  try {
    const tids = readdirSync(`/proc/${pid}/task`).map(Number).filter((t) => Number.isInteger(t) && t !== pid);
    return [pid, ...tids.sort((a, b) => a - b)];
  } catch {
    return [];
  }
}

/** /proc/<pid>/status as key → the number its value starts with (kB for the Vm* keys); empty when the process is gone. */
export function statusNumbers(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of (readText(`/proc/${pid}/status`) ?? '').split('\n')) {
    const colon = line.indexOf(':');
    const value = Number.parseInt(line.slice(colon + 1).trim(), 10);
    if (colon > 0 && Number.isFinite(value)) out.set(line.slice(0, colon), value);
  }
  return out;
}

/** Every process id /proc lists now. */
export function pids(): number[] {
  try {
    return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number);
  } catch {
    return [];
  }
}

/** Every live descendant of pid, children first. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number): void => {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const tid of tasks) {
      for (const c of (readText(`/proc/${p}/task/${tid}/children`) ?? '').split(' ').filter(Boolean).map(Number)) {
        if (!out.includes(c) && isRunning(c)) {
          out.push(c);
          visit(c);
        }
      }
    }
  };
  visit(pid);
  return out;
}

export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readText(`/proc/${pid}/status`) ?? '');
  return m ? Number(m[1]) * 1024 : 0;
}

export function cpuTimeMs(pid: number): number {
  const s = readStat(pid);
  return s ? (s.cpuTicks * 1000) / USER_HZ : 0;
}

/** Milliseconds since the process started. */
export function uptimeMs(pid: number): number {
  const s = readStat(pid);
  const up = Number((readText('/proc/uptime') ?? '0').split(' ')[0]);
  return s ? Math.max(0, up * 1000 - (s.startTicks * 1000) / USER_HZ) : 0;
}

/**
 * Milliseconds on the monotonic clock, as performance.now() counts them (from another origin) but without it: the
 * first performance.now() loads node's perf_hooks, 12 modules and ~0.9 MiB of RSS, for a clock process.hrtime
 * reads as well.
 */
export function monotonicMs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}

/**
 * `n` random bytes from the kernel's CSPRNG, read from /dev/urandom: what node:crypto's randomBytes gives, without
 * loading node:crypto (webcrypto and its 25 modules, ~1 MiB of RSS) in a host that needs random names only.
 */
export function randomBytesSync(n: number): Buffer {
  const buf = Buffer.alloc(n);
  const fd = openSync('/dev/urandom', 'r');
  try {
    for (let got = 0; got < n; ) {
      const read = readSync(fd, buf, got, n - got, null);
      if (read === 0) throw new Error('/dev/urandom ended');
      got += read;
    }
  } finally {
    closeSync(fd);
  }
  return buf;
}

/** A random (version 4) UUID, as crypto.randomUUID() makes one, from randomBytesSync. */
export function randomUuid(): string {
  const b = randomBytesSync(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
