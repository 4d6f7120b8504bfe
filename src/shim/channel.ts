import type { InitializeResult } from 'hvplug/protocol';

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
  onNotification(listener: (method: string, params: unknown) => void): () => void;
}
