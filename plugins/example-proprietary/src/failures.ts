import { PluginError } from 'hvplug/plugin-sdk';
import { formatIssues, type Issue } from 'hvplug/protocol';

/**
 * The protocol errors the SDK's `errors` has no constructor for, built with the `data` shape the host
 * parses (protocol ErrorData).
 */
export function invalidParams(method: string, path: (string | number)[], message: string): PluginError {
  return new PluginError('InvalidParams', `${method}: ${path.join('.') || '(root)'}: ${message}`, {
    method,
    issues: [{ path, message }],
  });
}

export function cancelled(method: string): PluginError {
  return new PluginError('Cancelled', `${method} was cancelled`);
}

export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function invalidParamsIssues(method: string, issues: Issue[]): PluginError {
  return new PluginError('InvalidParams', `${method}: ${formatIssues(issues)}`, { method, issues });
}
