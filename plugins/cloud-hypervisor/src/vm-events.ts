// How the VMM's event-monitor events and its exit translate into hvplug's VM events and statuses.
import type { StatusEventType } from 'hvplug/plugin-sdk';
import type { VmStatus } from 'hvplug/protocol';
import type { ChEvent } from './event-monitor.js';
import type { ExitInfo } from './launcher.js';

export type Announced = StatusEventType;

/**
 * The status event a VMM event stands for. Only source "vm" events change the VM; booting, pausing,
 * snapshotting... are steps on the way, and Cloud Hypervisor has no device-added event at all.
 */
const STATUS_EVENTS: Readonly<Record<string, Announced>> = {
  booted: 'running',
  paused: 'paused',
  resumed: 'resumed',
  restored: 'paused',
  shutdown: 'stopped',
};

export function announcedFor(e: ChEvent): Announced | undefined {
  return e.source === 'vm' ? STATUS_EVENTS[e.event] : undefined;
}

export interface ExitVerdict {
  readonly status: 'stopped' | 'crashed';
  readonly reason: string;
}

/**
 * Why the VMM exited and what that leaves the VM: stopped when the plugin asked for it or the VMM shut
 * down cleanly (a guest power-off ends the VMM with code 0), crashed otherwise. A process that did not
 * start the VMM only sees it vanish from /proc: it judges by what the VMM wrote last.
 */
export function exitVerdict(info: ExitInfo, o: { requested: boolean; parent: boolean; sawVmmShutdown: boolean; status: VmStatus }): ExitVerdict {
  const clean = info.code === 0 || (!o.parent && (o.sawVmmShutdown || o.status === 'stopped'));
  const status = o.requested || clean ? 'stopped' : 'crashed';
  if (o.requested) return { status, reason: 'the VMM was shut down on request' };
  if (info.signal) return { status, reason: `the VMM was killed by ${info.signal}` };
  if (info.code !== null) return { status, reason: info.code === 0 ? 'the VMM exited (the guest powered off, or vmm.shutdown)' : `the VMM exited with code ${info.code}` };
  return { status, reason: `the VMM exited; its exit status is unknown to this plugin process, which did not start it${clean ? ' (it had shut down cleanly)' : ''}` };
}
