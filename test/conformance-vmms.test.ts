// The conformance suite (src/conformance) run by the project's own tests against the two real-VMM
// plugins: Cloud Hypervisor against its contract double (the plugin is pointed at a wrapper script that
// execs the double's bundle, as in cloud-hypervisor-plugin.test.ts), and QEMU under TCG with the host's
// kernel and hvplug's initramfs. Each run declares its known failures through the suite's own
// expected-failures mechanism, one reason per id; the test fails on anything else that fails, on an
// expected failure that starts passing, and on any VMM or plugin process left behind.
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runConformance, type Report } from 'hvplug/conformance';
import { SKIP_MESSAGE, TEST_CACHE_DIR, findQemu } from '../plugins/qemu/test-support/guest.js';
import { root } from '../scripts/bundle.mjs';
import { alive, pluginExecutable, processesUnder } from './helpers.js';

const DOUBLE_BUNDLE = join(root, 'plugins/cloud-hypervisor/dist/cloud-hypervisor-double.mjs');

const dirs: string[] = [];
async function workDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** What the report says beyond `ok`, in a form whose diff explains a failure. */
function verdict(report: Report, expected: readonly string[]): void {
  const unexpected = report.checks.filter((c) => c.status === 'fail' && !c.expectedFailure).map((c) => `${c.id}: ${c.message ?? ''}`);
  expect(unexpected, 'checks that failed unexpectedly (or expected failures that passed)').toEqual([]);
  expect(report.unknownExpectedFailures, 'expected failures naming no check').toEqual([]);
  const byId = new Map(report.checks.map((c) => [c.id, c]));
  for (const id of expected) expect(byId.get(id), id).toMatchObject({ status: 'fail', expectedFailure: true });
  expect(report.summary.expectedFailures).toBe(expected.length);
  expect(report.interrupted).toBe(false);
  expect(report.ok).toBe(true);
}

function summaryLine(name: string, report: Report, wallMs: number): string {
  const s = report.summary;
  return `[conformance ${name}] ${s.total} checks: ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped, ${s.expectedFailures} expected failures; ${(wallMs / 1000).toFixed(1)} s`;
}

describe('cloud-hypervisor against its contract double', () => {
  // Net devices are built with a backend the plugin declares (vhost-user here: no user-mode networking).
  const EXPECTED: string[] = [];

  it('passes the whole suite', async () => {
    const dir = await workDir('hvplug-conf-ch-');
    const binary = join(dir, 'cloud-hypervisor');
    await writeFile(binary, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(DOUBLE_BUNDLE)} "$@"\n`);
    await chmod(binary, 0o755);
    // The double only opens the kernel.
    const kernel = join(dir, 'vmlinux');
    await writeFile(kernel, 'not a kernel: the double only opens it');
    const started = Date.now();
    const report = await runConformance({
      command: pluginExecutable('cloud-hypervisor'),
      env: { HVPLUG_CH_BINARY: binary },
      vmConfig: { kernel: { path: kernel, cmdline: 'console=ttyS0 panic=-1' } },
      expectedFailures: EXPECTED,
      workDir: dir,
    });
    const wall = Date.now() - started;
    console.info(summaryLine('cloud-hypervisor (double)', report, wall));
    verdict(report, EXPECTED);
    expect(report.summary.passed).toBeGreaterThan(100);
    expect(report.pids.filter(alive), 'plugin or VMM processes left running').toEqual([]);
    expect(processesUnder([dir]), 'VMM processes left running').toEqual([]);
  }, 300_000);
});

const qemu = findQemu();
if (!qemu) console.warn(`skipping the QEMU conformance run: ${SKIP_MESSAGE}`);

describe.skipIf(!qemu)('qemu under TCG', () => {
  /**
   * The whole suite runs, in about a minute on a 2-core machine. The hot-unplug checks ask for the unplug
   * right after vm/start, while the TCG guest still boots: the plugin repeats device_del until the guest,
   * once up, answers (test/qemu-plugin.test.ts covers that on its own).
   */
  const EXPECTED: string[] = [];

  it('passes the whole suite, in CI time', async () => {
    const dir = await workDir('hvplug-conf-qemu-');
    const started = Date.now();
    const report = await runConformance({
      command: pluginExecutable('qemu'),
      vmConfig: {
        // Default kernel and initramfs; the guest script keeps the guest up, else it powers off mid-check.
        plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR, guestScript: 'sleep 600' },
      },
      // An unplug asked during boot completes at the first device_del the guest sees once up, 6 s apart:
      // on a slow TCG boot that is past the suite's default 10 s call deadline.
      callTimeoutMs: 30_000,
      expectedFailures: EXPECTED,
      workDir: dir,
    });
    const wall = Date.now() - started;
    console.info(summaryLine('qemu (TCG)', report, wall));
    verdict(report, EXPECTED);
    expect(report.summary.passed).toBeGreaterThan(100);
    expect(report.pids.filter(alive), 'plugin or QEMU processes left running').toEqual([]);
    expect(processesUnder([dir]), 'QEMU processes left running').toEqual([]);
    expect(wall, 'the QEMU conformance run is too slow for CI').toBeLessThan(240_000);
  }, 360_000);
});
