import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { alive, consoleTicks, eventually } from '../helpers.js';
import { cli, daemonTestHooks, dirs, ok, ps, startDaemon, type Dirs } from '../daemon-helpers.js';

/**
 * `hvplug migrate` when `hvplug daemon` serves the source state directory, the destination's, or both (example
 * plugin, every command and daemon a process of its own): the source's daemon drives the hand-off, the destination's
 * receives the VM through its API, and the record rules of docs/migration.md hold as without daemons.
 */
const PLUGIN = 'example-proprietary';
const guests = daemonTestHooks();


async function consoleOf(d: Dirs, name: string): Promise<string> {
  const info = JSON.parse(await ok(d, ['info', name, '--json'])) as { console?: { path?: string } };
  expect(info.console?.path).toBeDefined();
  return info.console?.path as string;
}

/** A VM counting every 20 ms on its console, running at `d`. */
async function countingVm(d: Dirs, name: string): Promise<{ id: string; pid: number; console: string }> {
  const vmJson = join(d.state, `${name}.json`);
  await writeFile(vmJson, JSON.stringify({ plugin: { tickMs: 20 } }));
  const id = (await ok(d, ['run', '--detach', '--plugin', PLUGIN, '--name', name, '--vm-config', vmJson])).trim();
  const [row] = await ps(d, guests);
  const console = await consoleOf(d, name);
  await eventually(async () => (await consoleTicks(console)).length >= 3, 10_000, 'ticks on the source console');
  return { id, pid: row?.pid as number, console };
}

/**
 * `hvplug migrate` from `from` to `to`, watching the source console meanwhile (it goes with the source VM): the
 * report, and the last tick the source guest wrote.
 */
async function migrate(from: Dirs, to: Dirs, name: string, source: string, extra: readonly string[] = []): Promise<{ vmId: string; lastTick: number; stderr: string }> {
  let seen: number[] = [];
  let migrating = true;
  const watching = (async () => {
    while (migrating) {
      const now = await consoleTicks(source);
      if (now.length > 0) seen = now;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const r = await cli(from, ['migrate', name, to.state, '--json', ...extra]).finally(() => (migrating = false));
  await watching;
  expect(r.exitCode, r.stderr).toBe(0);
  const report = JSON.parse(r.stdout) as { vmId: string; downtimeMs: number; transferredBytes: number };
  expect(report.transferredBytes).toBeGreaterThan(0);
  return { vmId: report.vmId, lastTick: seen.at(-1) as number, stderr: r.stderr };
}

/** The VM went from `from` to `to`: one record, there, unmarked and running, none here; its counter carried on. */
async function expectMoved(from: Dirs, to: Dirs, id: string, srcPid: number, lastTick: number): Promise<{ pid: number; console: string }> {
  expect(await ps(from, guests)).toEqual([]);
  const rows = await ps(to, guests);
  expect(rows.map((r) => [r.id, r.status, r.name])).toEqual([[id, 'running', 'mover']]);
  const record = JSON.parse(await readFile(join(to.state, 'vms', `${id}.json`), 'utf8')) as { migration?: unknown };
  expect(record.migration).toBeUndefined();
  await eventually(() => !alive(srcPid), 5_000, 'the source guest ends');
  const console = await consoleOf(to, 'mover');
  await eventually(async () => (await consoleTicks(console)).length >= 3, 10_000, 'ticks at the destination');
  const after = await consoleTicks(console);
  // The source guest stood still (SIGSTOP) from the reading of its counter until it went: its last tick is the last.
  expect(after[0]).toBe(lastTick + 1);
  expect(after).toEqual(after.map((_, i) => lastTick + 1 + i));
  return { pid: rows[0]?.pid as number, console };
}

describe('hvplug migrate through the daemons', () => {
  it('moves a running VM between two daemons: the counter continues, one record on the destination, the source guest gone; the destination daemon drives it', async () => {
    const a = await dirs();
    const b = await dirs();
    await startDaemon(a);
    const daemonB = await startDaemon(b);
    const vm = await countingVm(a, 'mover');
    const { vmId, lastTick, stderr } = await migrate(a, b, 'mover', vm.console, ['--log-level', 'info']);
    expect(vmId).toBe(vm.id);
    // The source plugin's $/progress came through the source daemon to this command.
    const progress = stderr.split('\n').filter((l) => l.includes('"msg":"migrating"'));
    expect(progress.length, stderr).toBeGreaterThan(0);
    await expectMoved(a, b, vm.id, vm.pid, lastTick);
    // Received through its API, not written behind its back: it never had to re-attach the VM from its record.
    expect(daemonB.logged('re-attached VM')).toEqual([]);
    await ok(b, ['pause', 'mover']);
    expect((await ps(b, guests))[0]?.status).toBe('paused');
    await ok(b, ['stop', 'mover']);
    expect(await ps(b, guests)).toEqual([]);
  }, 120_000);

  it('a refusal leaves the VM at the source, its record unmarked, and nothing at the destination', async () => {
    const a = await dirs();
    const b = await dirs();
    await startDaemon(a);
    await startDaemon(b);
    const vm = await countingVm(a, 'mover');
    // The destination has no such plugin: refused before anything is sent.
    const noPlugin = await cli(a, ['migrate', 'mover', b.state, '--plugin', 'no-such-plugin']);
    expect(noPlugin.exitCode).toBe(1);
    expect(noPlugin.stderr).toContain('no plugin named no-such-plugin');
    // Paused: the source plugin refuses vm/migrate, after the destination had prepared its VM (which goes again).
    await ok(a, ['pause', 'mover']);
    const paused = await cli(a, ['migrate', 'mover', b.state]);
    expect(paused.exitCode).toBe(1);
    expect(await ps(b, guests)).toEqual([]);
    const rows = await ps(a, guests);
    expect(rows.map((r) => [r.id, r.status])).toEqual([[vm.id, 'paused']]);
    const record = JSON.parse(await readFile(join(a.state, 'vms', `${vm.id}.json`), 'utf8')) as { migration?: unknown };
    expect(record.migration).toBeUndefined();
    // It runs on where it was.
    const before = (await consoleTicks(vm.console)).at(-1) as number;
    await ok(a, ['resume', 'mover']);
    await eventually(async () => ((await consoleTicks(vm.console)).at(-1) as number) > before + 2, 10_000, 'ticks after resume');
    expect(alive(vm.pid)).toBe(true);
    // The state directory is its own.
    const self = await cli(a, ['migrate', 'mover', a.state]);
    expect(self.exitCode).toBe(1);
    expect(self.stderr).toMatch(/own state directory/);
    await ok(a, ['stop', 'mover']);
  }, 120_000);

  it('from a daemon to a state directory no daemon serves, and from there to a daemon', async () => {
    const a = await dirs();
    const c = await dirs();
    const b = await dirs();
    await startDaemon(a);
    const vm = await countingVm(a, 'mover');
    // The source daemon opens the destination itself, in the runtime directory the next commands use.
    const first = await migrate(a, c, 'mover', vm.console, ['--to-runtime-dir', c.run]);
    const there = await expectMoved(a, c, vm.id, vm.pid, first.lastTick);
    // This process drives, from c, to the daemon of b.
    const daemonB = await startDaemon(b);
    const second = await migrate(c, b, 'mover', there.console);
    await expectMoved(c, b, vm.id, there.pid, second.lastTick);
    expect(daemonB.logged('re-attached VM')).toEqual([]);
    await ok(b, ['stop', 'mover']);
  }, 180_000);

  it('a VM whose record is marked by an unfinished migration is not re-attached by a command, which refuses to change it', async () => {
    const a = await dirs();
    const vm = await countingVm(a, 'mover');
    const file = join(a.state, 'vms', `${vm.id}.json`);
    const record = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    await writeFile(file, JSON.stringify({ ...record, migration: { role: 'outgoing', peer: 'elsewhere:/var/lib/hvplug', since: new Date().toISOString() } }));
    const paused = await cli(a, ['pause', 'mover']);
    expect(paused.exitCode, paused.stdout).toBe(1);
    expect(paused.stderr).toMatch(/undecided live migration \(outgoing, peer elsewhere:\/var\/lib\/hvplug/);
    // Not paused behind the refusal: the guest counts on.
    const before = (await consoleTicks(vm.console)).at(-1) as number;
    await eventually(async () => ((await consoleTicks(vm.console)).at(-1) as number) > before + 2, 10_000, 'ticks go on');
    await writeFile(file, JSON.stringify(record));
    await ok(a, ['stop', 'mover']);
  }, 60_000);
});
