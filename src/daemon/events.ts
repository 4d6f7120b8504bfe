import type { PluginHost, ShimHypervisor } from '../core/index.js';
import { DROPPED_NOTICE, EVENT_NOTICE, MAX_UNREAD_EVENT_BYTES, type EventNotice } from './api.js';

/** The part of a client's socket a feed looks at: how much it has not yet taken, and when it has taken it all. */
export interface FeedSocket {
  readonly writableLength: number;
  once(event: 'drain', listener: () => void): unknown;
}

/**
 * One client's subscription. An event is sent only while the client has less than `maxUnread` bytes left unread;
 * past that it is dropped and counted, and once the client has read everything the count is sent in one notice. The
 * daemon so holds at most `maxUnread` bytes and one event for a client that reads slowly or never.
 */
export class EventFeed {
  private dropped = 0;

  constructor(
    private readonly socket: FeedSocket,
    private readonly send: (method: string, params: unknown) => void,
    private vmIds: ReadonlySet<string> | undefined,
    private readonly maxUnread: number = MAX_UNREAD_EVENT_BYTES,
  ) {}

  /** Another subscribe on the same connection: its filter replaces this one. */
  refilter(vmIds: ReadonlySet<string> | undefined): void {
    this.vmIds = vmIds;
  }

  push(notice: EventNotice): void {
    if (this.vmIds && !this.vmIds.has(notice.event.vmId)) return;
    if (this.socket.writableLength > this.maxUnread) {
      if (this.dropped++ === 0) this.socket.once('drain', () => this.sendDropped());
      return;
    }
    this.send(EVENT_NOTICE, notice);
  }

  private sendDropped(): void {
    const count = this.dropped;
    this.dropped = 0;
    if (count > 0) this.send(DROPPED_NOTICE, { count });
  }
}

/**
 * Every VM event of a host's plugins, handed to the feeds of subscribed clients. A plugin's shim is watched from the
 * start of its first process, before the host sends it any call, so no event of a VM it drives is missed.
 */
export class EventHub {
  readonly feeds = new Set<EventFeed>();
  private readonly watched = new WeakSet<ShimHypervisor>();
  private readonly unwatch: (() => void)[] = [];
  private readonly onStarted = ({ plugin }: { plugin: string }): void => {
    // The runtime the host is starting: its shim, once made. A plugin that fails to start has no events to give.
    this.host.hypervisor(plugin).then(
      (hv) => this.watch(plugin, hv),
      () => undefined,
    );
  };

  private readonly onDeleted = ({ plugin, vmId, name }: { plugin: string; vmId: string; name?: string }): void => {
    if (this.feeds.size === 0) return;
    const notice: EventNotice = { plugin, ...(name !== undefined ? { name } : {}), event: { vmId, time: new Date().toISOString(), type: 'deleted' } };
    for (const feed of this.feeds) feed.push(notice);
  };

  constructor(private readonly host: PluginHost) {
    host.on('plugin-started', this.onStarted);
    host.on('vm-deleted', this.onDeleted);
  }

  private watch(plugin: string, hv: ShimHypervisor): void {
    if (this.watched.has(hv)) return;
    this.watched.add(hv);
    this.unwatch.push(
      hv.onEvent((event) => {
        if (this.feeds.size === 0) return;
        const name = hv.vm(event.vmId)?.config.name;
        const notice: EventNotice = { plugin, ...(name !== undefined ? { name } : {}), event };
        for (const feed of this.feeds) feed.push(notice);
      }),
    );
  }

  close(): void {
    this.host.off('plugin-started', this.onStarted);
    this.host.off('vm-deleted', this.onDeleted);
    for (const u of this.unwatch.splice(0)) u();
    this.feeds.clear();
  }
}
