// migrateLive's reading of query-migrate, against QEMU 7.2's order of things: `completed` is visible a moment
// before total-time and downtime are computed (migration_iteration_finish), and a poll in that moment reads zeros.
import { describe, expect, it } from 'vitest';
import type { CallContext } from 'hvplug/plugin-sdk';
import { migrateLive } from '../../src/migration.js';
import type { QmpClient } from '../../src/qmp.js';

/** A QMP client that answers query-migrate from a script, the last answer repeated. */
function scriptedQmp(answers: readonly Record<string, unknown>[]): { qmp: QmpClient; asked: () => number } {
  let n = 0;
  const fake = {
    execute: (command: string): Promise<unknown> => {
      if (command !== 'query-migrate') return Promise.resolve({});
      const a = answers[Math.min(n, answers.length - 1)];
      n++;
      return Promise.resolve(a);
    },
  };
  return { qmp: fake as unknown as QmpClient, asked: () => n };
}

const ctx = (): CallContext => ({ signal: new AbortController().signal, progress: () => undefined }) as unknown as CallContext;

describe('migrateLive', () => {
  it('asks again when QEMU says completed before it has computed the downtime and total time', async () => {
    const { qmp, asked } = scriptedQmp([
      { status: 'active', ram: { transferred: 10, total: 100 } },
      { status: 'completed', 'total-time': 0, downtime: 0, ram: { transferred: 86_000_000, total: 100 } },
      { status: 'completed', 'total-time': 0, downtime: 0, ram: { transferred: 86_000_000, total: 100 } },
      { status: 'completed', 'total-time': 618, downtime: 22, ram: { transferred: 86_000_000, total: 100 } },
    ]);
    await expect(migrateLive(qmp, 'unix:/x', ctx())).resolves.toEqual({ downtimeMs: 22, totalMs: 618, transferredBytes: 86_000_000 });
    expect(asked()).toBe(4);
  });

  it('answers what it has when the figures never come', async () => {
    const { qmp } = scriptedQmp([{ status: 'completed', ram: { transferred: 5, total: 5 } }]);
    await expect(migrateLive(qmp, 'unix:/x', ctx())).resolves.toEqual({ totalMs: 0, transferredBytes: 5 });
  });
});
