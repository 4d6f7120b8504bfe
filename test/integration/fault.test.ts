import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, killRounds, newRun, summary } from '../fault-run.js';
import { EXAMPLE_GUEST_TITLE, ensureCliBuilt, removeTempDirs, tempDir } from '../helpers.js';

/**
 * The fault test of the VM records: a host in a process of its own runs mutating calls (create, start, device
 * add/remove, pause/resume, stop, delete) on up to 50 VMs of the example plugin, SIGKILLs its own plugin at random
 * moments, and is itself SIGKILLed at random moments and started again on the same directories. After each host
 * death, the state store and /proc are checked against what the host's journal says had returned (FaultModel).
 */
beforeAll(ensureCliBuilt, 120_000);
afterAll(removeTempDirs);

describe('fault test: host and plugin SIGKILLed under a workload of mutating calls', () => {
  it('50 VMs of the example plugin: ≥ 200 plugin kills, ≥ 50 host kills, no record lost, no guest orphaned', async () => {
    const run = newRun(
      {
        plugin: 'example-proprietary',
        config: { plugin: { tickMs: 1_000 } },
        target: 50,
        workers: 8,
        pluginKill: { minMs: 100, maxMs: 300 },
        hostLifeMs: { minMs: 300, maxMs: 1_500 },
        // The title a guest gives itself, or its argv before it does.
        guestMarks: (runtimeDir) => [EXAMPLE_GUEST_TITLE, `${runtimeDir}/`],
      },
      await tempDir('hvplug-fault-'),
    );
    console.log(`fault test seed ${run.seed} (HVPLUG_FAULT_SEED replays it)`);
    const t0 = Date.now();
    await killRounds(run, { hostKills: 50, pluginKills: 200, maxHostKills: 120 });
    await cleanup(run);
    console.log(summary(run, 'example plugin', t0));
    expect(run.model.counts.hostKills).toBeGreaterThanOrEqual(50);
    expect(run.model.counts.pluginKills).toBeGreaterThanOrEqual(200);
  }, 300_000);
});
