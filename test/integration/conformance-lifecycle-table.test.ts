import { describe, expect, it } from 'vitest';
import { runConformance } from 'hvplug/conformance';
import { alive, fixture } from '../helpers.js';

const FAST = { exitDeadlineMs: 1_000, callTimeoutMs: 5_000 };

describe('conformance: the state machine check (lifecycle.table)', () => {
  it('fails a plugin that accepts a forbidden transition, naming the pair, and nothing else', async () => {
    const report = await runConformance({ command: fixture('broken-lifecycle'), ...FAST });
    const failed = report.checks.filter((c) => c.status === 'fail');
    expect(failed.map((c) => c.id)).toEqual(['lifecycle.table']);
    expect(failed[0]?.message).toMatch(/^1 \(status, method\) pair disagrees with the state machine/);
    expect(failed[0]?.message).toMatch(/vm\/resizeVcpus in stopped: succeeded .*must answer InvalidState/);
    expect(report.pids.filter(alive)).toEqual([]);
  });

  it('passes the broken plugins\' conformant core', async () => {
    const report = await runConformance({ command: fixture('broken-none'), ...FAST, only: ['lifecycle'] });
    expect(report.checks.find((c) => c.id === 'lifecycle.table')?.status).toBe('pass');
    expect(report.checks.filter((c) => c.status === 'fail').map((c) => `${c.id}: ${c.message}`)).toEqual([]);
  });
});
