import type { Logger } from 'pino';
import { isMethodName, methodDef, notificationVmId, type InitializeResult } from 'hvplug/protocol';
import type { ChannelCallOptions, NotificationListener, PluginChannel } from '../shim/channel.js';
import { SupervisedPlugin, type SupervisionOptions } from './supervisor.js';
import type { ClientOptions } from './plugin-client.js';
import type { PluginSpec } from './plugin-spec.js';

/**
 * isolation = "per-vm": one supervised process per VM, so one VM's plugin crash touches no other VM.
 * A separate process answers the calls that concern no VM (images, config validation).
 */
export class PerVmChannel implements PluginChannel {
  private readonly perVm = new Map<string, Promise<SupervisedPlugin>>();
  private readonly listeners = new Set<NotificationListener>();
  private readonly logger: Logger;

  private constructor(
    private readonly spec: PluginSpec,
    private readonly clientOpts: ClientOptions,
    private readonly supervision: SupervisionOptions,
    readonly shared: SupervisedPlugin,
    /** Told of every process before it starts (vmId undefined for the shared one), so the host can supervise and re-attach it. */
    private readonly onProcess: (proc: SupervisedPlugin, vmId: string | undefined) => void,
  ) {
    this.logger = clientOpts.logger.child({ plugin: spec.name });
    // The shared process serves no VM: a VM's notifications come from that VM's own process only.
    shared.onNotification((m, p, origin) => this.forwardFrom(undefined, m, p, origin));
  }

  static async start(
    spec: PluginSpec,
    clientOpts: ClientOptions,
    supervision: SupervisionOptions,
    onProcess: (proc: SupervisedPlugin, vmId: string | undefined) => void,
  ): Promise<PerVmChannel> {
    const shared = await SupervisedPlugin.start(spec, clientOpts, supervision, (proc) => onProcess(proc, undefined));
    return new PerVmChannel(spec, clientOpts, supervision, shared, onProcess);
  }

  get info(): InitializeResult {
    return this.shared.info;
  }

  onNotification(listener: NotificationListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Passes on what the process serving `served` (undefined: the shared one) may say; drops and logs the rest. */
  private forwardFrom(served: string | undefined, method: string, params: unknown, origin: number): void {
    const about = notificationVmId(method, params);
    if (about !== undefined && about !== served) {
      this.logger.warn({ pid: origin, method, vmId: about, serves: served ?? null }, 'dropped a plugin process event for a VM it does not serve');
      return;
    }
    for (const l of this.listeners) l(method, params, origin);
  }

  /** The process serving vmId, if there is one. */
  processOf(vmId: string): Promise<SupervisedPlugin> | undefined {
    return this.perVm.get(vmId);
  }

  private spawnFor(vmId: string): Promise<SupervisedPlugin> {
    let p = this.perVm.get(vmId);
    if (!p) {
      p = SupervisedPlugin.start(this.spec, this.clientOpts, this.supervision, (s) => {
        s.onNotification((m, params, origin) => this.forwardFrom(vmId, m, params, origin));
        this.onProcess(s, vmId);
      });
      this.perVm.set(vmId, p);
      p.catch(() => this.perVm.delete(vmId));
    }
    return p;
  }

  async call(method: string, params: unknown, opts: ChannelCallOptions): Promise<unknown> {
    const vmId = (params as { vmId?: unknown } | null)?.vmId;
    const scope = isMethodName(method) ? methodDef(method).scope : 'plugin';
    if (typeof vmId !== 'string' || (scope !== 'vm' && scope !== 'new-vm')) return this.shared.call(method, params, opts);
    const existing = this.perVm.get(vmId);
    if (!existing && scope === 'vm') return this.shared.call(method, params, opts);
    const proc = await (existing ?? this.spawnFor(vmId));
    try {
      const result = await proc.call(method, params, opts);
      if (isMethodName(method) && methodDef(method).record === 'delete') await this.release(vmId);
      return result;
    } catch (err) {
      if (!existing && scope === 'new-vm') await this.release(vmId);
      throw err;
    }
  }

  private async release(vmId: string): Promise<void> {
    const p = this.perVm.get(vmId);
    this.perVm.delete(vmId);
    await (await p?.catch(() => undefined))?.close();
  }

  async close(): Promise<void> {
    const all = [...this.perVm.values()];
    this.perVm.clear();
    await Promise.all([this.shared.close(), ...all.map(async (p) => (await p.catch(() => undefined))?.close())]);
  }
}
