import type { Capabilities } from 'hvplug/protocol';
import { describeError } from './check.js';
import { callDeadline } from './deadlines.js';
import type { EventLog } from './event-log.js';
import { ProcessLedger } from './processes.js';
import type { Connection, PluginSession } from './session.js';
import type { WireMonitor } from './wire-monitor.js';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Makes sure a run leaves nothing behind: deletes VMs the checks created (re-attaching them first when
 * their plugin process died), and knows each VM's host processes from what vm/info and vm/pids
 * answered, to kill them when the plugin cannot be trusted to.
 */
export class Janitor {
  /** What could not be cleaned up the protocol's way. */
  readonly problems: { check: string; what: string }[] = [];
  private readonly vmPids = new Map<string, Set<number>>();
  /** Every VM process learned of, to kill survivors and only them. */
  readonly processes = new ProcessLedger();

  constructor(
    private readonly session: PluginSession,
    private readonly wire: WireMonitor,
    private readonly events: EventLog,
    private readonly caps: Capabilities,
    /** --call-timeout, when given; else each method's own deadline. */
    private readonly callTimeoutMs: number | undefined,
  ) {
    wire.subscribe((r) => {
      const m = r.message;
      if (r.direction !== 'receive' || m.method !== undefined || !isObject(m.result)) return;
      const request = wire.requestOf(r.tag, m.id);
      const vmId = isObject(request?.params) ? request.params.vmId : undefined;
      if (typeof vmId !== 'string') return;
      if (request?.method === 'vm/info' && typeof m.result.pid === 'number') this.learn(vmId, [m.result.pid]);
      if (request?.method === 'vm/pids' && Array.isArray(m.result.pids)) this.learn(vmId, m.result.pids.filter((p): p is number => typeof p === 'number'));
    });
  }

  private learn(vmId: string, pids: number[]): void {
    const set = this.vmPids.get(vmId) ?? new Set<number>();
    for (const p of pids) {
      if (!Number.isInteger(p) || p <= 1) continue;
      set.add(p);
      this.processes.note(p);
    }
    this.vmPids.set(vmId, set);
  }

  pidsOf(vmId: string): number[] {
    return [...(this.vmPids.get(vmId) ?? [])];
  }

  private advertised(method: string): boolean {
    return this.caps.methods.includes(method);
  }

  private deadline(method: string): { timeoutMs: number | null } {
    return { timeoutMs: callDeadline(method, this.callTimeoutMs) };
  }

  private async deleteThrough(conn: Connection, vmId: string): Promise<void> {
    const vm = conn.hv.vm(vmId);
    if (vm) await vm.delete(undefined, this.deadline('vm/delete'));
    else await conn.client.call('vm/delete', { vmId }, this.deadline('vm/delete'));
  }

  /** Deletes one VM the protocol's way if at all possible; otherwise kills its known processes and says so. */
  async releaseVm(conn: Connection, vmId: string, check: string): Promise<void> {
    if (this.events.isDeleted(vmId)) return;
    try {
      if (!this.advertised('vm/delete')) {
        if (conn.client.alive && this.advertised('vm/stop')) {
          await conn.client.call('vm/stop', { vmId, force: true, graceMs: 0 }, this.deadline('vm/stop'));
          return;
        }
        throw new Error('neither vm/delete nor vm/stop is advertised');
      }
      if (conn.client.alive) {
        await this.deleteThrough(conn, vmId);
        return;
      }
      const main = await this.session.ensureMain();
      const known = conn.hv.vm(vmId);
      if (!known || !this.advertised('vm/recover')) throw new Error(`its plugin process ${conn.tag} died`);
      // The protocol's own way back to a VM whose plugin died: re-attach, then delete.
      await main.hv.recoverVm({ vmId, config: known.config, state: known.state ?? null }, this.deadline('vm/recover'));
      await this.deleteThrough(main, vmId);
    } catch (err) {
      const killed = this.processes.killAll(this.pidsOf(vmId));
      this.problems.push({
        check,
        what: `VM ${vmId} could not be deleted (${describeError(err)})${killed.length ? `; killed its processes ${killed.join(', ')}` : ''}`,
      });
    }
  }
}
