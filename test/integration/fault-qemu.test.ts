import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SKIP_MESSAGE, TEST_CACHE_DIR, findQemu } from '../../plugins/qemu/test-support/guest.js';
import { cleanup, killRounds, newRun, summary, type FaultRun } from '../fault-run.js';
import { ensureCliBuilt, processesUnder, removeTempDirs, tempDir } from '../helpers.js';

/**
 * The fault test of test/integration/fault.test.ts with a few real QEMU VMs (TCG): the same workload of mutating calls, the same
 * invariants after each host SIGKILL (a QEMU process is found by the run's runtime directory on its command line,
 * and belongs to the VM whose id it names), fewer rounds.
 */
const qemu = findQemu();
if (!qemu) console.warn(`skipping the QEMU fault test: ${SKIP_MESSAGE}`);
let run: FaultRun | undefined;

beforeAll(ensureCliBuilt, 120_000);
afterAll(async () => {
  // A failed run must not leave its QEMUs behind.
  if (run) for (const pid of processesUnder([run.runtimeDir])) process.kill(pid, 'SIGKILL');
  await removeTempDirs();
});

describe.skipIf(!qemu)('fault test with QEMU: host and plugin SIGKILLed under a workload of mutating calls', () => {
  it('3 QEMU VMs: ≥ 10 plugin kills, ≥ 5 host kills, no record lost, no QEMU orphaned', async () => {
    run = newRun(
      {
        plugin: 'qemu',
        config: {
          vcpus: { boot: 1 },
          memory: { sizeMiB: 256 },
          plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR, guestScript: 'while true; do echo TICK; sleep 1; done' },
        },
        target: 3,
        workers: 3,
        // QEMU's calls take seconds under TCG: kills a few seconds apart land during them.
        pluginKill: { minMs: 1_500, maxMs: 4_000 },
        hostLifeMs: { minMs: 4_000, maxMs: 9_000 },
        guestMarks: (runtimeDir) => [`${runtimeDir}/`],
      },
      await tempDir('hvplug-fault-qemu-'),
    );
    console.log(`QEMU fault test seed ${run.seed} (HVPLUG_FAULT_SEED replays it)`);
    const t0 = Date.now();
    await killRounds(run, { hostKills: 5, pluginKills: 10, maxHostKills: 10 });
    await cleanup(run);
    console.log(summary(run, 'QEMU', t0));
    expect(run.model.counts.hostKills).toBeGreaterThanOrEqual(5);
    expect(run.model.counts.pluginKills).toBeGreaterThanOrEqual(10);
  }, 240_000);
});
