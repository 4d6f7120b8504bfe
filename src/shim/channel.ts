import type { InitializeResult } from 'hvplug/protocol';

export type NotificationListener = (method: string, params: unknown, origin: number) => void;

export interface ChannelCallOptions {
  timeoutMs: number | null;
  signal?: AbortSignal;
}

/**
 * What the shim needs from the host: a way to call the plugin that serves a VM, and its notifications.
 * The host decides which process that is (shared or per-VM) and swaps it after a restart.
 */
export interface PluginChannel {
  readonly info: InitializeResult;
  call(method: string, params: unknown, opts: ChannelCallOptions): Promise<unknown>;
  /** `origin` tells the plugin's processes apart (its pid): each numbers its events on its own. */
  onNotification(listener: NotificationListener): () => void;
}
