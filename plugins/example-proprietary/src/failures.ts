import { errors, PluginError } from 'hvplug/plugin-sdk';

/** InvalidParams for one field, with the `data` shape the host parses (protocol ErrorData). */
export function invalidParams(method: string, path: (string | number)[], message: string): PluginError {
  return errors.invalidParams(method, [{ path, message }]);
}

export function cancelled(method: string): PluginError {
  return new PluginError('Cancelled', `${method} was cancelled`);
}

export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
