// Failures of the REST API as protocol errors. A status code alone says little (the real binary answers
// 500 for most wrong-state errors, see README.md), so nothing is inferred from it: the plugin checks
// states itself before calling, and whatever the VMM still refuses reaches the caller as VmmFailure with
// the VMM's status code and its messages, top error first.
import { PluginError, translating } from 'hvplug/plugin-sdk';
import { ChApiError, ChConnectionError, ChResponseError } from './api-client.js';

function chError(err: unknown): PluginError | undefined {
  if (err instanceof ChApiError) {
    const vmmMessage = err.messages.length ? err.messages.join(': ') : err.body || `HTTP ${err.status}`;
    return new PluginError('VmmFailure', err.message, {
      vmmMessage,
      vmmCode: err.status,
      endpoint: err.endpoint,
      messages: [...err.messages],
    });
  }
  if (err instanceof ChConnectionError) {
    return new PluginError('VmmFailure', err.message, { vmmMessage: err.message, vmmCode: err.code, endpoint: err.endpoint });
  }
  if (err instanceof ChResponseError) {
    return new PluginError('VmmFailure', err.message, { vmmMessage: err.issues, vmmCode: err.status, endpoint: err.endpoint });
  }
  return undefined;
}

/** Runs a client call, turning its failures into protocol errors. */
export const chCall = <T>(fn: () => Promise<T>): Promise<T> => translating(fn, chError);
