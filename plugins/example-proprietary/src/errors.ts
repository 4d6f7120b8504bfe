// The plugin's failures the SDK's `errors` do not spell out already.
import { errors, type PluginError } from 'hvplug/plugin-sdk';

/** InvalidParams for one field, with the `data` shape the host parses (protocol ErrorData). */
export function invalidParams(method: string, path: (string | number)[], message: string): PluginError {
  return errors.invalidParams(method, [{ path, message }]);
}

/** The errno name (ENOENT, EACCES...) of a node failure: the simulated VMM's own error code. */
export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
