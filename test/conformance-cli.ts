// `hvplug conformance --plugin <name>` run the way the README shows it (the built CLI, the defaults a user gets,
// no deadline options), and what a whole pass means: one test file per bundled plugin uses these, so the three
// long runs can go to different test workers.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import { root } from '../scripts/bundle.mjs';
import { CLI, alive, processesUnder, tempDir } from './helpers.js';

export const DOUBLE_BUNDLE = join(root, 'plugins/cloud-hypervisor/dist/cloud-hypervisor-double.mjs');

export interface Outcome {
  exitCode: number | undefined;
  output: string;
  wallMs: number;
  /** The run's own temporary directory's parent: every VMM of the run names it on its command line. */
  tmp: string;
}

/** `hvplug conformance <args>` as a user types it; TMPDIR is the test's so leftover VMMs can be found. */
export async function conformance(args: readonly string[], env: Record<string, string> = {}): Promise<Outcome> {
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
export function expectConformant(name: string, o: Outcome): void {
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

