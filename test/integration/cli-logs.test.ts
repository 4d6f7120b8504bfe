import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { alive, CLI, ensureCliBuilt, eventually, removeTempDirs, tempDir } from '../helpers.js';

/**
 * `hvplug logs` through the built CLI, on detached VMs of the example plugin, whose guest writes a boot line and then
 * `tick N` on its console log every tickMs: each command a process of its own, with and without the daemon.
 */
const PLUGIN = 'example-proprietary';

interface Dirs {
  state: string;
  run: string;
  work: string;
}

type Child = ResultPromise<{ reject: false; buffer: true }>;

const guests = new Set<number>();
const children = new Set<Child>();

beforeAll(async () => {
  await ensureCliBuilt();
}, 120_000);

afterEach(async () => {
  for (const c of children) {
    c.kill('SIGKILL');
    await c;
  }
  children.clear();
});

afterAll(async () => {
  for (const pid of guests) {
    try {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  await removeTempDirs();
});

async function dirs(): Promise<Dirs> {
  return { state: await tempDir('hvplug-logs-state-'), run: await tempDir('hvplug-logs-run-'), work: await tempDir('hvplug-logs-work-') };
}

function spawn(d: Dirs, args: readonly string[]): Child {
  const child = execa('node', [CLI, '--state-dir', d.state, '--runtime-dir', d.run, ...args], { reject: false, buffer: true, env: { HVPLUG_CONFIG: '' } });
  children.add(child);
  return child;
}

async function cli(d: Dirs, args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa('node', [CLI, '--state-dir', d.state, '--runtime-dir', d.run, ...args], { reject: false, timeout: 60_000, env: { HVPLUG_CONFIG: '' } });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function ok(d: Dirs, args: readonly string[]): Promise<string> {
  const r = await cli(d, args);
  expect(r.exitCode, `hvplug ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** A detached VM whose guest ticks every 20 ms; its pid noted for the clean-up. */
async function chatty(d: Dirs, name: string, settings: Record<string, number> = {}): Promise<string> {
  const vmJson = join(d.work, `${name}.json`);
  await writeFile(vmJson, JSON.stringify({ plugin: { tickMs: 20, ...settings } }));
  const id = (await ok(d, ['run', '--detach', '--plugin', PLUGIN, '--name', name, '--vm-config', vmJson])).trim();
  const info = JSON.parse(await ok(d, ['info', name, '--json'])) as { pid?: number };
  if (info.pid !== undefined) guests.add(info.pid);
  return id;
}

/** Collects a child's stdout as it comes. */
function lines(child: Child): () => string[] {
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  return () => out.split('\n').filter((l) => l !== '');
}

const tickOf = (line: string | undefined): number => Number(/^tick (\d+)$/.exec(line ?? '')?.[1] ?? Number.NaN);

/** Started, and left to afterEach to end; not returned, as an execa child is a thenable that an await would wait out. */
async function startDaemon(d: Dirs): Promise<void> {
  const daemon = spawn(d, ['daemon']);
  let out = '';
  daemon.stdout.on('data', (c: Buffer) => (out += c.toString()));
  await eventually(() => out.includes('ready') || daemon.exitCode !== null, 30_000, 'the daemon to be ready');
  expect(out).toContain('ready');
}

describe('hvplug logs', () => {
  it('prints the console log of a detached VM, its last lines with --tail, and fails clearly on what it cannot read', async () => {
    const d = await dirs();
    const id = await chatty(d, 'chatty');
    await eventually(async () => (await ok(d, ['logs', 'chatty'])).includes('tick 3'), 20_000, 'a few ticks on the console');

    const all = (await ok(d, ['logs', id.slice(0, 8)])).split('\n');
    expect(all[0]).toBe(`boot ${id} next=0 tickMs=20`);
    expect(all.slice(1, 4)).toEqual(['tick 0', 'tick 1', 'tick 2']);

    const two = (await ok(d, ['logs', 'chatty', '--tail', '2'])).split('\n');
    expect(two).toHaveLength(2);
    expect(tickOf(two[1])).toBe(tickOf(two[0]) + 1);
    expect(tickOf(two[0])).toBeGreaterThanOrEqual(2);
    expect(await ok(d, ['logs', 'chatty', '--tail', '0'])).toBe('');
    // More lines than there are: all of them, from the boot line.
    expect((await ok(d, ['logs', 'chatty', '--tail', '1000000'])).split('\n')[0]).toBe(`boot ${id} next=0 tickMs=20`);

    const none = await cli(d, ['logs', 'nothing-here']);
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toContain('no VM "nothing-here"');
    const bad = await cli(d, ['logs', 'chatty', '--tail', 'lots']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('--tail: expected a whole number from 0 to 1000000, got "lots"');

    const quietJson = join(d.work, 'quiet.json');
    await writeFile(quietJson, JSON.stringify({ console: 'none' }));
    await ok(d, ['create', '--plugin', PLUGIN, '--name', 'quiet', '--vm-config', quietJson]);
    const silent = await cli(d, ['logs', 'quiet']);
    expect(silent.exitCode).toBe(1);
    expect(silent.stderr).toMatch(/has no console: its config says console "none"/);

    await ok(d, ['rm', '--force', 'chatty']);
    await ok(d, ['rm', '--force', 'quiet']);
  }, 120_000);

  for (const withDaemon of [false, true]) {
    it(`follows the log with -f ${withDaemon ? 'through the daemon' : 'without a daemon'}, leaving the VM free for other commands, until SIGTERM`, async () => {
      const d = await dirs();
      if (withDaemon) await startDaemon(d);
      await chatty(d, 'follow');
      await eventually(async () => (await ok(d, ['logs', 'follow'])).includes('tick 2'), 20_000, 'a few ticks on the console');

      const follower = spawn(d, ['logs', 'follow', '-f', '--tail', '1']);
      const seen = lines(follower);
      await eventually(() => seen().length >= 1, 20_000, 'the last line of the log');
      const first = tickOf(seen()[0]);
      expect(first).toBeGreaterThanOrEqual(2);
      await eventually(() => tickOf(seen().at(-1)) >= first + 5, 20_000, 'new ticks while following');
      // Consecutive: nothing lost or repeated between the tail and what followed.
      expect(seen().map(tickOf)).toEqual(seen().map((_, i) => first + i));

      // The follower holds nothing: another process pauses and resumes the VM meanwhile.
      expect((await ok(d, ['pause', 'follow'])).trim()).toMatch(/^[0-9a-f-]{36}$/);
      await ok(d, ['resume', 'follow']);
      const resumedAt = seen().length;
      await eventually(() => seen().length >= resumedAt + 3, 20_000, 'ticks after the resume');

      follower.kill('SIGTERM');
      const r = await follower;
      expect(r.exitCode, r.stderr).toBe(0);
      await ok(d, ['rm', '--force', 'follow']);
    }, 120_000);
  }
});
