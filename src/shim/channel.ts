import type { InitializeResult } from 'hvplug/protocol';

export type NotificationListener = (method: string, params: unknown, origin: number) => void;

export interface ChannelCallOptions {
  timeoutMs: number | null;
  signal?: AbortSignal;
  /**
   * Called the moment the answer is read, before anything the plugin sent after it: the shim tells from it which
   * events came after the answer (and are newer than the status it carries).
   */
  onAnswer?: () => void;
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
