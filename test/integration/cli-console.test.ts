import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SKIP_MESSAGE, TEST_CACHE_DIR, findQemu } from '../../plugins/qemu/test-support/guest.js';
import { alive, CLI, ensureCliBuilt, eventually, removeTempDirs, tempDir } from '../helpers.js';

/**
 * `hvplug console` through the built CLI: a socket console attached in a real pseudo-terminal (tmux) against a real
 * QEMU guest's shell, and a log console followed read-only.
 */
const qemu = findQemu();
const TMUX = ['/usr/bin/tmux', '/bin/tmux'].find((p) => existsSync(p));
const SOCKET_SKIP = !qemu ? SKIP_MESSAGE : !TMUX ? 'tmux is not installed: apt-get install tmux' : undefined;
if (SOCKET_SKIP) console.warn(`skipping the interactive console test: ${SOCKET_SKIP}`);

let stateDir: string;
let runtimeDir: string;
let work: string;
const guests = new Set<number>();

beforeAll(async () => {
  await ensureCliBuilt();
  work = await tempDir('hvplug-cli-console-');
  stateDir = join(work, 'state');
  runtimeDir = join(work, 'run');
}, 120_000);

afterAll(async () => {
  for (const pid of guests) if (alive(pid)) process.kill(-pid, 'SIGKILL');
  await removeTempDirs();
});

const globals = (): string[] => ['--state-dir', stateDir, '--runtime-dir', runtimeDir];

async function ok(args: readonly string[]): Promise<string> {
  const r = await execa('node', [CLI, ...globals(), ...args], { reject: false, timeout: 120_000, env: { HVPLUG_CONFIG: '' } });
  expect(r.exitCode, `hvplug ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

describe('hvplug console --help', () => {
  it('shows the usage of a command that has no options of its own', async () => {
    const r = await execa('node', [CLI, 'console', '--help'], { reject: false, env: { HVPLUG_CONFIG: '' } });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^Usage: hvplug \[global options\] console <vm> \[options\]/);
    expect(r.stdout).toContain('Ctrl-] detaches');
    expect(r.stdout).toMatch(/Global options:\n {2}--config/);
  });
});

describe('hvplug console of a log console', () => {
  it('prints the log and follows it read-only, saying so, until SIGINT', async () => {
    const id = (await ok(['run', '--detach', '--plugin', 'example-proprietary', '--name', 'logged'])).trim();
    try {
      const child = execa('node', [CLI, ...globals(), 'console', 'logged'], { reject: false, env: { HVPLUG_CONFIG: '' } });
      let out = '';
      let err = '';
      child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
      // The guest's boot line was written before the command started; its ticks come after.
      await eventually(() => /boot .*\n[\s\S]*tick \d+\n/.test(out), 30_000, `the log and a tick on stdout (got ${JSON.stringify(out)})`);
      expect(err).toMatch(/offers no interactive console for VM .*: following its log .* read-only \(Ctrl-C leaves\)/);
      child.kill('SIGINT');
      const r = await child;
      expect(r.exitCode).toBe(0);
      expect(JSON.parse(await ok(['ps', '--json']))).toEqual([expect.objectContaining({ id, status: 'running' })]);
    } finally {
      await ok(['rm', '-f', id]);
    }
  }, 120_000);
});

describe.skipIf(SOCKET_SKIP !== undefined)(`hvplug console in a pseudo-terminal against a QEMU guest's shell (tmux, TCG)${SOCKET_SKIP ? ` (skipped: ${SOCKET_SKIP})` : ''}`, () => {
  it('types a command into the guest shell, reads its answer, detaches with Ctrl-], and the VM still runs', async () => {
    const vmConfig = join(work, 'vm.json');
    // No guestScript: the default guest of a socket console is the interactive shell.
    await writeFile(vmConfig, JSON.stringify({ console: 'socket', memory: { sizeMiB: 256 }, plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR } }));
    const id = (await ok(['run', '--detach', '--plugin', 'qemu', '--name', 'shell', '--vm-config', vmConfig])).trim();
    const tmuxSocket = join(work, 'tmux.sock');
    const tmux = (...args: string[]): string => execFileSync(TMUX!, ['-S', tmuxSocket, ...args], { encoding: 'utf8' });
    try {
      const info = JSON.parse(await ok(['info', '--json', 'shell'])) as { pid: number; console: { kind: string; path: string }; details: { consoleLog: string } };
      guests.add(info.pid);
      expect(info.console).toEqual({ kind: 'socket', path: join(runtimeDir, 'qemu', id, 'console.sock') });
      // Typed once the shell is about to read; the log has the guest's output whoever is attached.
      await eventually(() => readFileSync(info.details.consoleLog, 'utf8').includes('HVPLUG-GUEST-READY'), 150_000, 'the guest to boot');

      const command = ['env', 'HVPLUG_CONFIG=', process.execPath, CLI, ...globals(), 'console', 'shell'].map(quote).join(' ');
      // The exit status is shown in the pane after the command ends; the shell then waits to be captured.
      tmux('new-session', '-d', '-s', 'console', '-x', '160', '-y', '50', `${command}; echo "CONSOLE-EXIT:$?"; sleep 600`);
      const pane = (): string => tmux('capture-pane', '-p', '-t', 'console', '-S', '-500');
      const waitPane = async (pattern: RegExp, timeoutMs: number, what: string): Promise<void> => {
        await eventually(() => pattern.test(pane()), timeoutMs, what).catch((e: Error) => {
          throw new Error(`${e.message}; pane:\n${pane()}`);
        });
      };
      await waitPane(/attached to the console of VM .*Ctrl-\] detaches/, 30_000, 'the attach line');

      tmux('send-keys', '-t', 'console', '-l', 'echo $((6*7))');
      tmux('send-keys', '-t', 'console', 'Enter');
      // The answer alone on a line: the echoed command line shows "6*7", not "42".
      await waitPane(/^42\s*$/m, 60_000, "the guest shell's answer");

      tmux('send-keys', '-t', 'console', 'C-]');
      await waitPane(/detached from the console of VM .*; it keeps running[\s\S]*CONSOLE-EXIT:0/, 30_000, 'the detach line and the exit status');

      const rows = JSON.parse(await ok(['ps', '--json'])) as { id: string; status: string; pid?: number }[];
      expect(rows.find((r) => r.id === id)).toMatchObject({ status: 'running', pid: info.pid });
      expect(alive(info.pid)).toBe(true);

      // With the daemon, the console comes through its socket, and its plugin watches the VM: a guest that powers
      // off ends the session.
      const daemon = execa('node', [CLI, ...globals(), 'daemon'], { reject: false, env: { HVPLUG_CONFIG: '' } });
      let said = '';
      daemon.stdout?.on('data', (b: Buffer) => (said += b.toString()));
      try {
        await eventually(() => said.includes('ready') || daemon.exitCode !== null, 60_000, 'the daemon to be ready');
        tmux('new-session', '-d', '-s', 'daemon-console', '-x', '160', '-y', '50', `${command}; echo "CONSOLE-EXIT:$?"; sleep 600`);
        const pane2 = (): string => tmux('capture-pane', '-p', '-t', 'daemon-console', '-S', '-500');
        const waitPane2 = async (pattern: RegExp, timeoutMs: number, what: string): Promise<void> => {
          await eventually(() => pattern.test(pane2()), timeoutMs, what).catch((e: Error) => {
            throw new Error(`${e.message}; pane:\n${pane2()}`);
          });
        };
        await waitPane2(new RegExp(`attached to the console of VM .* through the hvplug daemon \\(pid ${daemon.pid}\\)`), 30_000, 'the attach line');
        tmux('send-keys', '-t', 'daemon-console', '-l', 'echo $((7*7))');
        tmux('send-keys', '-t', 'daemon-console', 'Enter');
        await waitPane2(/^49\s*$/m, 60_000, "the guest shell's answer through the daemon");
        tmux('send-keys', '-t', 'daemon-console', '-l', 'poweroff -f');
        tmux('send-keys', '-t', 'daemon-console', 'Enter');
        await waitPane2(/the console of VM .* closed: its VMM ended it[\s\S]*CONSOLE-EXIT:0/, 90_000, 'the session to end with the guest');
        await eventually(() => !alive(info.pid), 30_000, 'QEMU to exit');
        // The console closes with QEMU's chardev; the plugin hears of QEMU's exit on its own path, a moment later.
        const statusNow = async (): Promise<string | undefined> => (JSON.parse(await ok(['ps', '--json'])) as { id: string; status: string }[]).find((r) => r.id === id)?.status;
        let last: string | undefined;
        await eventually(async () => /^(stopped|exited)$/.test((last = await statusNow()) ?? ''), 30_000, 'ps to show the VM ended').catch((e: Error) => {
          throw new Error(`${e.message}; last status ${String(last)}`);
        });
      } finally {
        daemon.kill('SIGTERM');
        await daemon;
      }
    } finally {
      try {
        tmux('kill-server');
      } catch {
        // Never started, or already gone.
      }
      await ok(['rm', '-f', id]);
    }
  }, 300_000);
});
