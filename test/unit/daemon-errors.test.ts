import { describe, expect, it } from 'vitest';
import { HvplugError, StateWriteError } from 'hvplug';
import { fromResponseError, toResponseError } from '../../src/daemon/errors.js';

describe("the daemon's errors on the wire", () => {
  it('an HvplugError of every code comes back to the client with its code, the host-only ones included', () => {
    const sent = [new StateWriteError('v1', 'the record could not be removed'), new HvplugError('undecided', 'MigrationUndecided'), new HvplugError('a FIFO', 'Unreadable')];
    for (const err of sent) {
      const wire = toResponseError(err, 'vm/delete');
      const back = fromResponseError(wire.code, wire.message, wire.data);
      expect(back, err.code).toBeInstanceOf(HvplugError);
      expect({ code: (back as HvplugError).code, message: back.message }).toEqual({ code: err.code, message: err.message });
    }
  });
});
