import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ensureCliBuilt, removeTempDirs, tempDir } from '../helpers.js';

/**
 * `hvplug conformance` refuses what would make a run meaningless or lose its report before it starts a
 * plugin: the real binary in a child process, each refusal a usage error (exit 2) naming the option.
 */
let dir: string;

beforeAll(async () => {
  await ensureCliBuilt();
  dir = await tempDir('hvplug-cli-conf-args-');
});
afterAll(removeTempDirs);

async function conformance(...args: string[]) {
  const started = Date.now();
  const r = await execa('node', [CLI, 'conformance', '--plugin', 'example-proprietary', ...args], {
    reject: false,
    env: { HVPLUG_CONFIG: '', NO_COLOR: '1' },
    timeout: 120_000,
  });
  return { ...r, ms: Date.now() - started };
}

describe('hvplug conformance usage errors', () => {
  it('--only that matches no check is a usage error naming it, not a run of 0 checks that passes', async () => {
    const r = await conformance('--only', 'nothing.matches');
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--only nothing\.matches matches no check/);
    expect(r.stdout).not.toMatch(/checks? in/);
  });

  it('--skip that matches no check is a usage error too; one good and one bad selector names the bad one', async () => {
    const skip = await conformance('--skip', 'no.such.group');
    expect(skip.exitCode).toBe(2);
    expect(skip.stderr).toMatch(/--skip no\.such\.group matches no check/);
    const mixed = await conformance('--only', 'handshake,nope');
    expect(mixed.exitCode).toBe(2);
    expect(mixed.stderr).toMatch(/--only nope matches no check/);
    expect(mixed.stderr).not.toMatch(/--only handshake/);
  });

  it('a --junit or --json path that cannot be written is refused before the run', async () => {
    for (const flag of ['--junit', '--json']) {
      const r = await conformance('--only', 'handshake', flag, '/nonexistent/dir/report.xml');
      expect(r.exitCode, `${flag}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`${flag}: cannot write /nonexistent/dir/report.xml`);
      // Refused up front: no check ran.
      expect(r.stdout).not.toMatch(/checks? in/);
    }
  });

  it('a missing --expected-failures file is a usage error naming the option and the file', async () => {
    const r = await conformance('--only', 'handshake', '--expected-failures', join(dir, 'nope.txt'));
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`--expected-failures: cannot read ${join(dir, 'nope.txt')}`);
    expect(r.stderr).not.toMatch(/^Error|at .*\.js:\d+/m);
  });

  it('a --junit path that can be written gets the report', async () => {
    const out = join(dir, 'reports');
    await mkdir(out);
    const expected = join(dir, 'expected.txt');
    await writeFile(expected, '# none\n');
    const r = await conformance('--only', 'handshake', '--junit', join(out, 'r.xml'), '--expected-failures', expected);
    expect(r.exitCode, r.stderr).toBe(0);
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(join(out, 'r.xml'), 'utf8')).toMatch(/<testsuite/);
  });
});
