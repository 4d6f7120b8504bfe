// QEMU's failures as protocol errors: what the VMM said (QMP error class and description, or its
// stderr when it died at start) travels to the host as VmmFailure instead of an InternalError.
import { PluginError, errors, translateError, translating } from 'hvplug/plugin-sdk';
import { QemuStartError } from './process.js';
import { QmpClosedError, QmpCommandError, QmpConnectError, QmpProtocolError, QmpTimeoutError } from './qmp.js';

function qemuError(err: unknown): PluginError | undefined {
  if (err instanceof QmpCommandError) return errors.vmmFailure(err.message, err.errorClass);
  if (err instanceof QemuStartError) {
    const e = errors.vmmFailure(err.message, err.exit?.code ?? undefined);
    return new PluginError('VmmFailure', e.message, { ...e.data, stderr: err.stderr });
  }
  if (err instanceof QmpClosedError || err instanceof QmpTimeoutError || err instanceof QmpConnectError || err instanceof QmpProtocolError) {
    return errors.vmmFailure(err.message);
  }
  return undefined;
}

export const toPluginError = (err: unknown): unknown => translateError(err, qemuError);

/** Runs `fn`, translating QEMU's errors. */
export const vmmCall = <T>(fn: () => Promise<T>): Promise<T> => translating(fn, qemuError);
