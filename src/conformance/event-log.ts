import { isMethodName, methodDef, statusAfter, VmEvent, type VmStatus } from 'hvplug/protocol';
import type { WireMonitor, WireRecord } from './wire-monitor.js';

/** One VM's existence in one plugin process: from the request that brought it up to its deletion. */
interface Life {
  /** How the request that brought it up is recorded: a new VM (create, restore, an incoming migration) or a re-attach. */
  origin: 'create' | 'reattach';
  status: VmStatus | undefined;
  lastSeq: number | undefined;
  events: number;
  deleted: boolean;
}

export interface EventViolation {
  check: string;
  vmId: string;
  what: string;
}

/** How the table records a method, for the methods that begin or end a VM's life in a plugin process. */
function lifeEdge(method: unknown): 'create' | 'reattach' | 'end' | undefined {
  if (typeof method !== 'string' || !isMethodName(method)) return undefined;
  const record = methodDef(method).record;
  // A VM handed off by a live migration leaves its process as a deleted one does.
  if (record === 'delete' || record === 'hand-off') return 'end';
  return record;
}

/**
 * Follows every VM's event stream as it crosses the wire and notes what breaks the order the protocol
 * promises: seq increasing, `created` first, transitions that fit the VM's status, nothing after delete.
 */
export class EventLog {
  readonly violations: EventViolation[] = [];
  private readonly lives = new Map<string, Life>();
  /** VMs deleted since they were last brought up, in any process. */
  private readonly gone = new Set<string>();
  /** Successful deletions, for the leftover-process check: which VM, in which process, when. */
  readonly deletions: { tag: string; vmId: string; at: number; check: string }[] = [];

  constructor(private readonly wire: WireMonitor) {
    wire.subscribe((r) => this.observe(r));
  }

  /** Deleted since it was last created, restored or recovered, by whichever plugin process. */
  isDeleted(vmId: string): boolean {
    return this.gone.has(vmId);
  }

  private observe(r: WireRecord): void {
    const m = r.message;
    const edge = r.direction === 'send' && m.id !== undefined ? lifeEdge(m.method) : undefined;
    if (edge === 'create' || edge === 'reattach') {
      const vmId = (m.params as { vmId?: unknown } | undefined)?.vmId;
      if (typeof vmId === 'string') {
        this.gone.delete(vmId);
        this.lives.set(`${r.tag} ${vmId}`, {
          origin: edge,
          status: undefined,
          lastSeq: undefined,
          events: 0,
          deleted: false,
        });
      }
      return;
    }
    if (r.direction !== 'receive') return;
    if (m.method === 'vm/event') {
      const parsed = VmEvent.safeParse(m.params);
      // A malformed event is the fields check's to report; it still happened, so the order is judged as if it had come whole.
      if (parsed.success) this.onEvent(r, parsed.data);
      else this.onMalformed(r, m.params);
      return;
    }
    if (m.method === undefined && 'result' in m) {
      const request = this.wire.requestOf(r.tag, m.id);
      const vmId = (request?.params as { vmId?: unknown } | undefined)?.vmId;
      if (lifeEdge(request?.method) === 'end' && typeof vmId === 'string') {
        const life = this.lives.get(`${r.tag} ${vmId}`);
        if (life) life.deleted = true;
        this.gone.add(vmId);
        this.deletions.push({ tag: r.tag, vmId, at: r.at, check: r.check });
      }
    }
  }

  /** Counts a malformed event whose VM and type can be read, so that its absence is not reported as disorder. */
  private onMalformed(r: WireRecord, params: unknown): void {
    const p = (typeof params === 'object' && params !== null ? params : {}) as { vmId?: unknown; type?: unknown };
    const life = typeof p.vmId === 'string' ? this.lives.get(`${r.tag} ${p.vmId}`) : undefined;
    const type = VmEvent.def.options.map((o) => o.shape.type.def.values[0]).find((t) => t === p.type);
    if (!life || !type) return;
    life.events++;
    life.status = statusAfter({ type } as VmEvent) ?? life.status;
  }

  private onEvent(r: WireRecord, e: VmEvent): void {
    const v = (what: string): void => {
      this.violations.push({ check: r.check, vmId: e.vmId, what: `${e.type} event (seq ${e.seq}): ${what}` });
    };
    const life = this.lives.get(`${r.tag} ${e.vmId}`);
    if (!life) {
      v('for a VM this plugin process never created, restored or recovered');
      return;
    }
    if (life.deleted) v('after vm/delete was answered');
    if (life.lastSeq !== undefined && e.seq <= life.lastSeq) v(`seq does not increase (previous ${life.lastSeq})`);
    const prev = life.status;
    if (life.events === 0 && life.origin !== 'reattach' && e.type !== 'created') v('a new VM is announced by created before anything else');
    switch (e.type) {
      case 'created':
        if (life.events > 0) v('created is not the first event of the VM');
        if (life.origin === 'reattach') v('a recovered VM is not created anew');
        break;
      case 'running':
        if (prev === 'running' || prev === 'paused') v(`the VM is already ${prev} (a paused VM resumes with "resumed")`);
        break;
      case 'resumed':
        if (prev !== 'paused') v(`only a paused VM resumes; it was ${prev ?? 'not yet reported'}`);
        break;
      case 'paused':
        if (prev === 'paused' || prev === 'stopped') v(`a ${prev} VM cannot pause`);
        break;
      case 'device-added':
      case 'device-removed':
        if (prev === 'crashed' || prev === 'lost') v(`the VM is ${prev}`);
        break;
      default:
        break;
    }
    life.lastSeq = e.seq;
    life.events++;
    life.status = statusAfter(e) ?? life.status;
  }
}
