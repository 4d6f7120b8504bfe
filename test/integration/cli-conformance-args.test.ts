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

  it('a --junit or --report path that cannot be written is refused before the run', async () => {
    for (const flag of ['--junit', '--report']) {
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

async function hvplug(args: readonly string[], env: Record<string, string> = {}) {
  return execa('node', [CLI, ...args], { reject: false, env: { HVPLUG_CONFIG: '', NO_COLOR: '1', ...env }, timeout: 120_000 });
}

describe('hvplug conformance on the shared parser', () => {
  it('--json is a boolean: the report, and only the report, on stdout; the summary on stderr', async () => {
    const r = await conformance('--only', 'handshake.initialize', '--json');
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { ok: boolean; checks: { id: string; status: string }[] };
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => [c.id, c.status])).toEqual([['handshake.initialize', 'pass']]);
    expect(r.stderr).toMatch(/1 passed, 0 failed/);
  });

  it('--json takes no value, as everywhere else; the report file is --report <file>', async () => {
    const r = await conformance('--only', 'handshake.initialize', '--json=report.json');
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim()).toBe('hvplug conformance: --json takes no value (got "report.json") (see: hvplug conformance --help)');
    const file = join(dir, 'report.json');
    const ok = await conformance('--quiet', '--only', 'handshake.initialize', '--report', file, '--json');
    expect(ok.exitCode, ok.stderr).toBe(0);
    const { readFile } = await import('node:fs/promises');
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(JSON.parse(ok.stdout));
  });

  it('--json with --junit - is refused: both want stdout', async () => {
    const r = await conformance('--only', 'handshake.initialize', '--json', '--junit', '-');
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('--json and --junit - both want stdout');
  });

  it('usage errors are the shared ones: one line, the command named, a pointer to its help', async () => {
    for (const [args, message] of [
      [['--frobnicate'], 'unknown option --frobnicate'],
      [['--check-timeout', 'soon'], '--check-timeout: expected a number of seconds greater than 0 and at most 86400, got "soon"'],
      [['--only'], '--only needs a value <id|group>'],
      [['stray'], 'unexpected argument "stray" (<command> [args...] goes after --)'],
    ] as const) {
      const r = await hvplug(['conformance', ...args]);
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr.trim()).toBe(`hvplug conformance: ${message} (see: hvplug conformance --help)`);
    }
  });

  it('accepts the global options before and after the command, as every command does', async () => {
    const state = join(dir, 'state');
    const before = await hvplug(['--state-dir', state, '--runtime-dir', join(dir, 'run'), '--log-level', 'warn', 'conformance', '--quiet', '--plugin', 'example-proprietary', '--only', 'handshake.initialize']);
    expect(before.exitCode, before.stderr).toBe(0);
    expect(before.stdout).toContain('1 passed, 0 failed');
    const after = await hvplug(['conformance', '--quiet', '--plugin', 'example-proprietary', '--only', 'handshake.initialize', '--state-dir', state, '--log-level', 'silent']);
    expect(after.exitCode, after.stderr).toBe(0);
    const badLevel = await hvplug(['conformance', '--log-level', 'loud']);
    expect(badLevel.exitCode).toBe(2);
    expect(badLevel.stderr).toContain('hvplug conformance: --log-level: expected one of');
    const version = await hvplug(['conformance', '--version']);
    expect(version.exitCode).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('help is the shared layout: usage lines, options, arguments and global options', async () => {
    for (const args of [['conformance', '--help'], ['help', 'conformance'], ['conformance', '-h']]) {
      const r = await hvplug(args);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toMatch(/^Usage: hvplug \[global options\] conformance \[options\] \[-- <command> \[args\.\.\.\]\]$/m);
      expect(r.stdout).toMatch(/^Options:$/m);
      expect(r.stdout).toMatch(/^ {2}--json\s+print the report as JSON on stdout/m);
      expect(r.stdout).toMatch(/^ {2}--report <file>\s+also write the report as JSON/m);
      expect(r.stdout).toMatch(/^Global options:\n(.*\n)*? {2}--state-dir <dir>/m);
    }
  });

  it('shell completion offers its options, --json and --report among them', async () => {
    const r = await hvplug(['completion', 'fish']);
    expect(r.exitCode).toBe(0);
    for (const flag of ['json', 'report', 'junit', 'only', 'plugin', 'state-dir']) {
      expect(r.stdout).toMatch(new RegExp(`__fish_seen_subcommand_from conformance' .*-l ${flag}\\b`));
    }
  });
});
