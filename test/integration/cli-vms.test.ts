import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, eventually, removeTempDirs, tempDir, CLI, ensureCliBuilt } from '../helpers.js';

/**
 * Detached VMs through the built CLI: every command is its own process, so what one leaves behind (a
 * running guest, a record in the state directory) is all the next one has to go on.
 */
const PLUGIN = 'example-proprietary';

interface PsRow {
  id: string;
  plugin: string;
  status: string;
  pid?: number;
  created: string;
}



let stateDir: string;
let runtimeDir: string;
/** Every guest pid seen, so that afterAll can kill whatever a failed test left running. */
const guests = new Set<number>();

beforeAll(async () => {
  await ensureCliBuilt();
  stateDir = await tempDir('hvplug-cli-vms-state-');
  runtimeDir = await tempDir('hvplug-cli-vms-run-');
}, 120_000);

afterAll(async () => {
  for (const pid of guests) {
    try {
      // The example guest leads its own process group; the group takes any helper down with it.
      if (alive(pid)) process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  await removeTempDirs();
});

async function cli(args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa('node', [CLI, '--state-dir', stateDir, '--runtime-dir', runtimeDir, ...args], {
    reject: false,
    timeout: 60_000,
    // Nothing from the developer's own setup: the flags above name the directories, and there is no config file.
    env: { HVPLUG_CONFIG: '' },
  });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function ps(): Promise<PsRow[]> {
  const r = await cli(['ps', '--json']);
  expect(r.exitCode, r.stderr).toBe(0);
  const rows = JSON.parse(r.stdout) as PsRow[];
  for (const row of rows) if (row.pid !== undefined) guests.add(row.pid);
  return rows;
}

async function detach(): Promise<{ id: string; pid: number }> {
  const r = await cli(['run', '--detach', '--plugin', PLUGIN, '--json']);
  expect(r.exitCode, r.stderr).toBe(0);
  const doc = JSON.parse(r.stdout) as { id: string; plugin: string; pid?: number };
  expect(doc.plugin).toBe(PLUGIN);
  expect(doc.pid, 'run --detach reports the guest pid').toBeTypeOf('number');
  guests.add(doc.pid!);
  return { id: doc.id, pid: doc.pid! };
}

describe('detached VMs: run --detach, ps, pause, resume, stop', () => {
  it('runs a VM past the CLI\'s exit and manages it from later commands until it is stopped', async () => {
    const human = await cli(['run', '--detach', '--plugin', PLUGIN]);
    expect(human.exitCode, human.stderr).toBe(0);
    const id = human.stdout.trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    // The CLI has exited; the guest runs on, and ps finds it through the state directory.
    const listed = await ps();
    expect(listed).toHaveLength(1);
    const row = listed[0]!;
    expect(row).toMatchObject({ id, plugin: PLUGIN, status: 'running' });
    expect(row.pid).toBeTypeOf('number');
    const pid = row.pid!;
    expect(alive(pid)).toBe(true);

    const table = await cli(['ps']);
    expect(table.stdout).toMatch(/^ID\s+PLUGIN\s+STATUS\s+PID\s+CREATED\s+OWNER\s+NAME$/m);
    expect(table.stdout).toMatch(new RegExp(`^${id}\\s+${PLUGIN}\\s+running\\s+${pid}\\s`, 'm'));

    const paused = await cli(['pause', id]);
    expect(paused.exitCode, paused.stderr).toBe(0);
    expect(paused.stdout.trim()).toBe(id);
    expect((await ps())[0]).toMatchObject({ id, status: 'paused', pid });

    const resumed = await cli(['resume', id, '--json']);
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toEqual({ id, status: 'running' });
    expect((await ps())[0]).toMatchObject({ id, status: 'running', pid });

    const stopped = await cli(['stop', id]);
    expect(stopped.exitCode, stopped.stderr).toBe(0);
    await eventually(() => !alive(pid), 5_000, `guest ${pid} to exit`);
    expect(await ps()).toEqual([]);
  }, 60_000);

  it('stop --keep leaves the stopped VM listed; a later stop deletes it', async () => {
    const { id, pid } = await detach();
    const kept = await cli(['stop', id, '--keep', '--json']);
    expect(kept.exitCode, kept.stderr).toBe(0);
    expect(JSON.parse(kept.stdout)).toMatchObject({ id, deleted: false });
    await eventually(() => !alive(pid), 5_000, `guest ${pid} to exit`);
    expect(await ps()).toEqual([expect.objectContaining({ id, status: 'stopped' })]);
    expect((await cli(['stop', id])).exitCode).toBe(0);
    expect(await ps()).toEqual([]);
  }, 60_000);

  it('shows a VM whose guest died while no CLI ran as lost, and stop removes its record', async () => {
    const { id, pid } = await detach();
    process.kill(-pid, 'SIGKILL');
    await eventually(() => !alive(pid), 5_000, `guest ${pid} to die`);
    const rows = await ps();
    expect(rows).toEqual([expect.objectContaining({ id, status: 'lost' })]);
    expect(rows[0]!.pid).toBeUndefined();
    expect((await cli(['stop', id])).exitCode).toBe(0);
    expect(await ps()).toEqual([]);
  }, 60_000);

  it('an unknown id exits 1 with one line naming the id and the state directory', async () => {
    for (const command of ['stop', 'pause', 'resume']) {
      const r = await cli([command, 'no-such-vm']);
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain('no-such-vm');
      expect(r.stderr).toContain(stateDir);
    }
  }, 60_000);

  it('reports an unreadable record on stderr and still lists the others', async () => {
    await mkdir(join(stateDir, 'vms'), { recursive: true });
    const bad = join(stateDir, 'vms', 'broken.json');
    await writeFile(bad, '{not json');
    try {
      const r = await cli(['ps', '--json']);
      expect(r.exitCode).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual([]);
      expect(r.stderr).toContain(bad);
    } finally {
      await rm(bad, { force: true });
    }
  });

  it('refuses --timeout with --detach, and documents the new commands', async () => {
    const r = await cli(['run', '--detach', '--timeout', '3', '--plugin', PLUGIN]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('--detach');
    const help = await cli(['help']);
    for (const command of ['ps', 'stop', 'pause', 'resume']) expect(help.stdout).toMatch(new RegExp(`^ {2}${command}\\s`, 'm'));
    const stopHelp = await cli(['stop', '--help']);
    expect(stopHelp.stdout).toContain('--keep');
    expect((await cli(['run', '--help'])).stdout).toContain('--detach');
  });
});

describe('hvplug stats', () => {
  it("shows a running VM's resource use from its plugin (vm/stats), as a table and as JSON", async () => {
    const { id, pid } = await detach();
    try {
      const json = await cli(['stats', id.slice(0, 8), '--json']);
      expect(json.exitCode, json.stderr).toBe(0);
      const doc = JSON.parse(json.stdout) as { id: string; cpuTimeMs: number; memoryRssBytes: number; uptimeMs: number; counters: Record<string, number> };
      expect(doc).toMatchObject({ id, counters: expect.any(Object) });
      // The guest is a real process: it has a resident set and has been up a while.
      expect(doc.memoryRssBytes).toBeGreaterThan(0);
      expect(doc.uptimeMs).toBeGreaterThan(0);
      const human = await cli(['stats', id]);
      expect(human.exitCode, human.stderr).toBe(0);
      expect(human.stdout).toMatch(/^CPU time:\s+\d/m);
      expect(human.stdout).toMatch(/^Memory \(RSS\):\s+\d+(\.\d+)? MiB$/m);
      const missing = await cli(['stats', 'no-such-vm']);
      expect(missing.exitCode).toBe(1);
      expect(missing.stderr).toContain('no-such-vm');
    } finally {
      await cli(['rm', '-f', id]);
      await eventually(() => !alive(pid), 5_000, `guest ${pid} to exit`);
    }
  }, 60_000);
});
