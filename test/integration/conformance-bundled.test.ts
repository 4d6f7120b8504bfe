// The conformance suite run against every bundled plugin the way the README shows it: the built CLI,
// `hvplug conformance --plugin <name>`, with the defaults a user gets (no deadline options), so a default
// that makes a bundled plugin non-conformant fails the build. Cloud Hypervisor runs against its contract
// double, which a user puts on PATH as `cloud-hypervisor` (the plugin's own lookup), with a kernel given by
// --vm-config because the plugin cannot boot without one; QEMU runs under TCG with the host's kernel and
// hvplug's default initramfs, as its plugin chooses by default.
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SKIP_MESSAGE, findQemu } from '../../plugins/qemu/test-support/guest.js';
import { root } from '../../scripts/bundle.mjs';
import { CLI, alive, ensureCliBuilt, processesUnder, removeTempDirs, tempDir } from '../helpers.js';

const DOUBLE_BUNDLE = join(root, 'plugins/cloud-hypervisor/dist/cloud-hypervisor-double.mjs');

beforeAll(ensureCliBuilt, 120_000);
afterAll(removeTempDirs);

interface Outcome {
  exitCode: number | undefined;
  output: string;
  wallMs: number;
  /** The run's own temporary directory's parent: every VMM of the run names it on its command line. */
  tmp: string;
}

/** `hvplug conformance <args>` as a user types it; TMPDIR is the test's so leftover VMMs can be found. */
async function conformance(args: readonly string[], env: Record<string, string> = {}): Promise<Outcome> {
  const tmp = await tempDir('hvplug-conf-cli-');
  const started = Date.now();
  const r = await execa('node', [CLI, 'conformance', ...args], {
    reject: false,
    all: true,
    timeout: 420_000,
    // No plugins config of the developer's own: the bundled plugins as discovered.
    env: { HVPLUG_CONFIG: '', TMPDIR: tmp, NO_COLOR: '1', ...env },
  });
  return { exitCode: r.exitCode, output: r.all, wallMs: Date.now() - started, tmp };
}

/** Live processes started with this TMPDIR: the run's plugin processes and VMMs inherit it. */
function processesWithTmpdir(tmp: string): number[] {
  const mark = `TMPDIR=${tmp}\0`;
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, 'utf8').includes(mark) && alive(pid);
      } catch {
        return false;
      }
    });
}

/** Passes whole: exit status 0, nothing failed, nothing left running. The failures are in the diff. */
function expectConformant(name: string, o: Outcome): void {
  const summary = /: (\d+) checks in [\d.]+ s\n\s+(\d+) passed, (\d+) failed, (\d+) skipped/.exec(o.output);
  console.info(`[hvplug conformance --plugin ${name}] ${summary ? `${summary[1]} checks: ${summary[2]} passed, ${summary[3]} failed, ${summary[4]} skipped` : 'no summary'}; ${(o.wallMs / 1000).toFixed(1)} s`);
  const failed = o.output.split('\n').filter((l) => l.startsWith('✗ ') || l.startsWith('    '));
  expect(failed, 'checks that failed, with their messages').toEqual([]);
  expect(summary, `no summary in the output:\n${o.output.slice(-2000)}`).not.toBeNull();
  expect(Number(summary?.[3])).toBe(0);
  expect(Number(summary?.[2])).toBeGreaterThan(100);
  expect(o.output).toMatch(/conformant: nothing unexpected failed\n?$/);
  expect(o.exitCode, o.output.slice(-2000)).toBe(0);
  expect(processesUnder([o.tmp]), 'VMM processes left running').toEqual([]);
  expect(processesWithTmpdir(o.tmp), 'plugin or VMM processes left running').toEqual([]);
}

describe('hvplug conformance --plugin <bundled plugin>, with the CLI defaults', () => {
  it('example-proprietary passes whole', async () => {
    expectConformant('example-proprietary', await conformance(['--plugin', 'example-proprietary']));
  }, 300_000);

  it('cloud-hypervisor passes whole against its contract double on PATH as cloud-hypervisor', async () => {
    // What a user without the real binary does: the shipped double on PATH under the binary's name, and a
    // kernel file for the config (the double only opens it).
    const dir = await tempDir('hvplug-conf-ch-');
    const bin = join(dir, 'bin');
    await mkdir(bin);
    await symlink(DOUBLE_BUNDLE, join(bin, 'cloud-hypervisor'));
    const kernel = join(dir, 'vmlinux');
    await writeFile(kernel, 'not a kernel: the double only opens it');
    const vmConfig = join(dir, 'vm.json');
    await writeFile(vmConfig, JSON.stringify({ kernel: { path: kernel } }));
    const o = await conformance(['--plugin', 'cloud-hypervisor', '--vm-config', vmConfig], { PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` });
    expectConformant('cloud-hypervisor', o);
    // Each check starts the double's node process: about 4 minutes on a loaded 2-core machine.
  }, 480_000);

  const qemu = findQemu();
  if (!qemu) console.warn(`skipping hvplug conformance --plugin qemu: ${SKIP_MESSAGE}`);
  it.skipIf(!qemu)(`qemu passes whole under TCG${qemu ? '' : ` (skipped: ${SKIP_MESSAGE})`}`, async () => {
    // About 90 s on a 2-core machine; the hot-unplug checks wait for the booting guest to answer the unplug.
    const o = await conformance(['--plugin', 'qemu']);
    expectConformant('qemu', o);
    expect(o.wallMs, 'the QEMU conformance run is too slow for CI').toBeLessThan(240_000);
  }, 360_000);
});
