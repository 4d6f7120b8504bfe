import { describe, expect, it } from 'vitest';
import { matchRef, resolveRef, type RefRecord } from '../../src/core/vm-ref.js';

const records: RefRecord[] = [
  { vmId: 'aaaa1111', config: { name: 'web' } },
  { vmId: 'aaaa2222', config: { name: 'aaaa1111' } },
  { vmId: 'bbbb3333', config: {} },
];

/** resolveRef with `byId` answering from `known`, and how often it read all the records. */
async function resolve(ref: string, known: readonly RefRecord[]) {
  let reads = 0;
  const match = await resolveRef(
    ref,
    '/state',
    (vmId) => Promise.resolve(known.find((r) => r.vmId === vmId)),
    () => {
      reads++;
      return Promise.resolve(records);
    },
  );
  return { match, reads };
}

describe('resolveRef: matchRef with an exact id looked up alone', () => {
  it('answers an exact id from its own record, without reading the others', async () => {
    expect(await resolve('aaaa1111', records)).toEqual({ match: { record: records[0] }, reads: 0 });
  });

  it('gives what matchRef gives for every reference, whether or not the id lookup can tell', async () => {
    for (const ref of ['aaaa1111', 'aaaa2222', 'web', 'bbbb', 'aaaa', 'bbb', 'nosuch', '']) {
      const expected = matchRef(records, ref, '/state');
      for (const known of [records, []]) expect((await resolve(ref, known)).match, `${ref} (${known.length})`).toEqual(expected);
    }
  });

  it('takes no record of another id for the answer (a store that misfiled one): matchRef decides', async () => {
    const misfiled = { vmId: 'cccc4444', config: {} };
    const lookup = await resolveRef('aaaa1111', '/state', () => Promise.resolve(misfiled), () => Promise.resolve(records));
    expect(lookup).toEqual({ record: records[0] });
  });
});
