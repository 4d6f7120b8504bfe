import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ensureCliBuilt, eventually, removeTempDirs, tempDir } from '../helpers.js';

/**
 * Human output on a terminal, JSON when piped: the built CLI in a real pseudo-terminal (tmux) and in a pipe, against
 * the example-proprietary plugin (no QEMU). Its guest prints once a minute here, so the run has a long silence to
 * fill with a status line.
 */
const TMUX = ['/usr/bin/tmux', '/bin/tmux'].find((p) => existsSync(p));
const TTY_SKIP = !TMUX ? 'tmux is not installed: apt-get install tmux' : undefined;
if (TTY_SKIP) console.warn(`skipping the pseudo-terminal tests: ${TTY_SKIP}`);

let work: string;
let vmConfig: string;

beforeAll(async () => {
  await ensureCliBuilt();
  work = await tempDir('hvplug-cli-tty-');
  vmConfig = join(work, 'vm.json');
  await writeFile(vmConfig, JSON.stringify({ plugin: { tickMs: 60_000 } }));
}, 120_000);
afterAll(removeTempDirs);

const globals = (): string[] => ['--state-dir', join(work, 'state'), '--runtime-dir', join(work, 'run'), '--log-level', 'info'];
const runArgs = (timeout: number): string[] => ['run', '--plugin', 'example-proprietary', '--vm-config', vmConfig, '--timeout', String(timeout)];
const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

describe.skipIf(TTY_SKIP !== undefined)(`hvplug on a terminal (tmux)${TTY_SKIP ? ` (skipped: ${TTY_SKIP})` : ''}`, () => {
  it('run: log lines as text, a status line through the silence that counts up and is gone at the end', async () => {
    const socket = join(work, 'tmux.sock');
    const tmux = (...args: string[]): string => execFileSync(TMUX!, ['-S', socket, ...args], { encoding: 'utf8' });
    const command = ['env', 'HVPLUG_CONFIG=', 'NO_COLOR=1', process.execPath, CLI, ...globals(), ...runArgs(6)].map(quote).join(' ');
    tmux('new-session', '-d', '-s', 'tty', '-x', '200', '-y', '50', `${command}; echo "RUN-EXIT:$?"; sleep 600`);
    const pane = (): string => tmux('capture-pane', '-p', '-t', 'tty', '-S', '-200');
    try {
      const seen: string[] = [];
      const status = /^hvplug: the guest runs \((\d+) s\); waiting for it to end \(Ctrl-C stops it; --timeout stops it at 6 s\)\s*$/m;
      await eventually(() => {
        const m = status.exec(pane());
        if (m?.[1] !== undefined && !seen.includes(m[1])) seen.push(m[1]);
        return seen.length >= 2;
      }, 30_000, 'the status line, counting').catch((e: Error) => {
        throw new Error(`${e.message}; pane:\n${pane()}`);
      });
      // One line, rewritten in place: never two of them on the screen.
      expect(pane().match(new RegExp(status.source, 'gm'))).toHaveLength(1);
      expect(Number(seen[1])).toBeGreaterThan(Number(seen[0]));
      await eventually(() => /RUN-EXIT:\d+/.test(pane()), 60_000, 'the run to end').catch((e: Error) => {
        throw new Error(`${e.message}; pane:\n${pane()}`);
      });
      const screen = pane();
      expect(screen).toMatch(/RUN-EXIT:0/);
      // Cleared when done: the last lines are the run's own, with no status line left among them.
      expect(screen).not.toMatch(/^hvplug: the guest runs/m);
      expect(screen).toMatch(/\[hvplug\] 6 s timeout: stopping the VM\n[\s\S]*\[hvplug\] done\nRUN-EXIT:0/);
      // The plugin's info logs, as text: time, level, message, fields; no pino JSON on the screen.
      expect(screen).toMatch(/^\d\d:\d\d:\d\d INFO {2}vcpus\.max is not set: .* plugin=example-proprietary vmId=[0-9a-f-]{36}$/m);
      expect(screen).not.toContain('{"level"');
    } finally {
      try {
        tmux('kill-server');
      } catch {
        // Never started, or already gone.
      }
    }
  }, 120_000);
});

describe('hvplug piped: output unchanged', () => {
  it('run: logs stay pino JSON lines on stderr, with no status line or terminal controls', async () => {
    const r = await execa('node', [CLI, ...globals(), ...runArgs(3)], { reject: false, timeout: 60_000, env: { HVPLUG_CONFIG: '' } });
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(JSON.parse(line)).toMatchObject({ level: expect.any(Number), msg: expect.any(String) });
    expect(r.stderr).toMatch(/"msg":"vcpus\.max is not set/);
    expect(r.stderr + r.stdout).not.toMatch(/the guest runs/);
    expect(r.stderr + r.stdout).not.toContain(String.fromCharCode(0x0d));
    expect(r.stderr + r.stdout).not.toContain(String.fromCharCode(0x1b));
    expect(r.stdout).toMatch(/\[hvplug\] done$/);
  }, 60_000);
});
