import { readdirSync, readFileSync } from 'node:fs';
import type { VmRecord } from 'hvplug';
import { alive } from './helpers.js';

/**
 * What the fault tests know of each VM from a workload host's journal (test/fixtures/hosts/workload.mjs), and the
 * invariants a state store must keep whenever a host dies.
 */
export interface JournalEntry {
  t: string;
  host: number;
  n?: number;
  vmId?: string;
  op?: string;
  status?: string | null;
  devices?: string[];
  name?: string;
  message?: string;
  pid?: number;
  ms?: Record<string, number>;
}

interface VmModel {
  createOk: boolean;
  createErr: boolean;
  /**
   * Its create failed because the plugin process died during it: the plugin may have begun the VM, so the record
   * stays pending until a plugin process re-attaches it.
   */
  createCut: boolean;
  deleteOk: boolean;
  /** What the record held right after the last call on the VM that returned a result. */
  last: { status: string; devices: string[] } | undefined;
  /**
   * Calls sent after that one: still under way when their host died, or failed (a plugin SIGKILLed in the middle
   * of a call fails it, yet what it asked may have been done). Either may have taken effect, or not.
   */
  pending: string[];
  /** The journal's lines about the VM, for the report of a broken invariant. */
  history: string[];
}

/** The errors of a call that got no answer because the plugin process died (or was killed for breaking its stream). */
const PROCESS_DEATH = new Set(['PluginExitedError', 'PluginFailedError', 'ProtocolError']);

/** The status a call leaves its VM in, had it taken effect; device calls leave the status alone. */
const EFFECT: Record<string, string | undefined> = { create: 'created', start: 'running', pause: 'paused', resume: 'running', stop: 'stopped' };

export class FaultModel {
  readonly vms = new Map<string, VmModel>();
  readonly counts = { calls: 0, ok: 0, failed: 0, pluginKills: 0, hostKills: 0, checks: 0 };
  readonly errorNames = new Map<string, number>();
  /** One message per error name, for the test's output. */
  readonly errorSamples = new Map<string, string>();
  /** Plugin processes the journal named: each must be gone once its host is. */
  readonly pluginPids = new Set<number>();

  private vm(vmId: string): VmModel {
    let m = this.vms.get(vmId);
    if (!m) {
      m = { createOk: false, createErr: false, createCut: false, deleteOk: false, last: undefined, pending: [], history: [] };
      this.vms.set(vmId, m);
    }
    return m;
  }

  apply(e: JournalEntry): void {
    if (e.t === 'plugin' && e.pid !== undefined) this.pluginPids.add(e.pid);
    if (e.t === 'pkill') this.counts.pluginKills++;
    if (!e.vmId) return;
    const m = this.vm(e.vmId);
    m.history.push(`host ${e.host} #${e.n ?? '-'} ${e.t} ${e.op ?? ''}${e.status ? ` → ${e.status}` : ''}${e.name ? ` ${e.name}: ${e.message}` : ''}`);
    if (!e.op) return;
    if (e.t === 'send') {
      this.counts.calls++;
      m.pending.push(e.op);
    } else if (e.t === 'ok') {
      this.counts.ok++;
      if (e.op === 'create') m.createOk = true;
      if (e.op === 'delete') m.deleteOk = true;
      m.last = { status: e.status ?? 'deleted', devices: e.devices ?? [] };
      m.pending = [];
    } else if (e.t === 'err') {
      this.counts.failed++;
      this.errorNames.set(e.name ?? '?', (this.errorNames.get(e.name ?? '?') ?? 0) + 1);
      if (!this.errorSamples.has(e.name ?? '?')) this.errorSamples.set(e.name ?? '?', `${e.op}: ${e.message ?? ''}`);
      if (e.op === 'create') {
        if (PROCESS_DEATH.has(e.name ?? '')) m.createCut = true;
        else m.createErr = true;
      }
    }
  }

  /**
   * Every broken invariant, as text (empty when all hold), given the store's records and the live guests by VM id.
   *
   * "The state that call left": a VM's record must hold the status of the last call that returned a result on it,
   * or the status of a call sent after that one (one the host died during, or one that failed because the plugin
   * died during it: the plugin may have done it before dying). Devices likewise, per device id: as the last
   * returned call left them, unless a device call sent after it may have changed them.
   */
  violations(records: readonly VmRecord[], guests: ReadonlyMap<string, number[]>): string[] {
    const out: string[] = [];
    const byId = new Map(records.map((r) => [r.vmId, r]));
    for (const [vmId, m] of this.vms) {
      const record = byId.get(vmId);
      const live = guests.get(vmId) ?? [];
      if (m.createErr && !m.createOk) {
        if (record) out.push(`${vmId}: its create failed, yet it has a record (${record.status})`);
        continue;
      }
      // Like a create its host died during, unknown: a record may stay pending until a plugin process re-attaches;
      // that one deletes the VM (its host alive) or adopts it (a new host). No guest without a record, below, holds.
      if (m.createCut && !m.createOk) continue;
      if (m.deleteOk && m.pending.length === 0) {
        if (record) out.push(`${vmId}: deleted, yet it has a record (${record.status})`);
        if (live.length) out.push(`${vmId}: deleted, yet its guest ${live.join(',')} runs`);
        continue;
      }
      // A create the host died during is unknown until a later host's call on the VM returns.
      if (!m.last) continue;
      const deleting = m.pending.includes('delete');
      if (!record) {
        if (!deleting) out.push(`${vmId}: created (last returned: ${m.last.status}), but no record`);
        continue;
      }
      const allowed = new Set([m.last.status, ...m.pending.flatMap((op) => EFFECT[op] ?? [])]);
      // A delete stops the guest before it forgets the VM, and says so by events (stopped): cut short after that,
      // it leaves a stopped VM, or one a later host finds without its guest (lost).
      if (deleting) for (const s of ['stopped', 'lost']) allowed.add(s);
      // So does a stop: the plugin ends the VMM (QEMU's quit) and is killed before it hears the VMM exit. The next
      // process finds no VMM and cannot tell our quit from a crash: lost, recorded, never forgotten.
      if (m.pending.includes('stop')) allowed.add('lost');
      if (!allowed.has(record.status)) {
        out.push(`${vmId}: recorded ${record.status}; last returned call left ${m.last.status}, calls sent since: [${m.pending.join(', ')}]`);
      }
      if (!m.pending.some((op) => op.startsWith('device'))) {
        const recorded = record.config.devices.map((d) => d.id).sort();
        if (recorded.join(',') !== m.last.devices.join(',')) {
          out.push(`${vmId}: recorded devices [${recorded.join(',')}]; the last returned call left [${m.last.devices.join(',')}]`);
        }
      }
    }
    for (const [vmId, pids] of guests) {
      if (!byId.has(vmId)) out.push(`${vmId}: guest ${pids.join(',')} runs without a record`);
    }
    return out;
  }

  /** The journal's lines about the VMs a violation names. */
  explain(violations: readonly string[]): string {
    const ids = new Set(violations.map((v) => v.slice(0, v.indexOf(':'))));
    return [...ids].map((id) => `${id}:\n  ${(this.vms.get(id)?.history ?? []).join('\n  ')}`).join('\n');
  }
}

/** Reads a journal file from a byte offset; returns the entries and the new offset (a torn last line waits). */
export function readJournal(path: string, from: number): { entries: JournalEntry[]; offset: number } {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch {
    return { entries: [], offset: from };
  }
  const text = buf.subarray(from).toString('utf8');
  const end = text.lastIndexOf('\n');
  if (end < 0) return { entries: [], offset: from };
  const entries = text
    .slice(0, end)
    .split('\n')
    .filter((l) => l.length > 0)
    .flatMap(journalLine);
  return { entries, offset: from + Buffer.byteLength(text.slice(0, end + 1)) };
}

/**
 * The entries of one line. A host SIGKILLed between the pages of its write(2) leaves part of an entry, which the next
 * host's append follows on the same line: that part was never written whole, so it never counts (a call's 'ok' it
 * held is a claim its host did not finish making), and the entry after it is read. Each entry starts with its `t`.
 */
function journalLine(line: string): JournalEntry[] {
  try {
    return [JSON.parse(line) as JournalEntry];
  } catch {
    const next = line.indexOf('{"t":', 1);
    return next < 0 ? [] : journalLine(line.slice(next));
  }
}

/** Live processes whose command line matches, by the VM id the pattern's first group captures. */
export function liveByVmId(pattern: RegExp, mustInclude: readonly string[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue;
    }
    if (!mustInclude.some((s) => cmdline.includes(s))) continue;
    const vmId = pattern.exec(cmdline)?.[1];
    if (vmId === undefined || !alive(pid)) continue;
    out.set(vmId, [...(out.get(vmId) ?? []), pid]);
  }
  return out;
}
