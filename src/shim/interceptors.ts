import type { MethodName } from 'hvplug/protocol';

export interface InterceptedCall {
  readonly method: MethodName;
  readonly vmId?: string;
  /** The params as the caller gave them (before validation); `before` may return replacements. */
  params: Record<string, unknown>;
}

/**
 * Hook points around every method, in the spirit of PouchContainer's pre/post hooks. `before` may
 * return rewritten params, or throw to veto the call; `after` may return a replacement result.
 */
export interface Interceptor {
  before?(call: InterceptedCall): void | Record<string, unknown> | Promise<void | Record<string, unknown>>;
  after?(call: InterceptedCall, result: unknown): unknown;
}
