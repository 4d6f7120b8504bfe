import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidStateError, PluginHost } from 'hvplug';
import type { Progress } from 'hvplug/protocol';
import { alive, consoleTicks, eventually, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

/**
 * Live migration between two hosts on this machine, each with its own state directory and its own example plugin
 * process: the guest's counter continues at the destination, the source guest is gone, and exactly one record
 * exists afterwards, on the destination.
 */
const PLUGIN = 'example-proprietary';
const hosts: PluginHost[] = [];

async function newHost(dir: string, name: string): Promise<PluginHost> {
  const host = new PluginHost({
    stateDir: join(dir, name, 'state'),
    runtimeDir: join(dir, name, 'run'),
    logger: memoryLogger().logger,
    plugins: [{ name: PLUGIN, command: pluginExecutable(PLUGIN) }],
  });
  hosts.push(host);
  return host;
}

const ticks = consoleTicks;

async function runningVm(host: PluginHost): Promise<{ vmId: string; console: string; pid: number }> {
  const hv = await host.hypervisor(PLUGIN);
  const vm = await hv.createVm({ config: { name: 'mover', vcpus: { boot: 1 }, plugin: { tickMs: 20 } } });
  await vm.start();
  const console = (await vm.console()).path;
  await eventually(async () => (await ticks(console)).length >= 5, 10_000, 'five ticks on the source console');
  return { vmId: vm.id, console, pid: (await vm.info()).pid as number };
}

afterEach(async () => {
  for (const h of hosts.splice(0)) {
    for (const r of (await h.records()).records) await (await h.attach(r.vmId).catch(() => undefined))?.delete().catch(() => undefined);
    await h.close();
  }
  await removeTempDirs();
});

describe('live migration between two hosts (example plugin)', () => {
  it('moves a running guest: its counter continues there, the source guest is gone, one record remains, on the destination', async () => {
    const dir = await tempDir();
    const src = await newHost(dir, 'a');
    const dst = await newHost(dir, 'b');
    const { vmId, console: srcConsole, pid: srcPid } = await runningVm(src);
    const progress: Progress[] = [];
    // The source console is removed with the source VM: what it said last is watched while the migration runs.
    let seen: number[] = [];
    let migrating = true;
    const watching = (async () => {
      while (migrating) {
        const now = await ticks(srcConsole);
        if (now.length > 0) seen = now;
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const report = await src.migrate(vmId, dst, { onProgress: (p) => progress.push(p) }).finally(() => (migrating = false));
    await watching;

    expect(report.transferredBytes).toBeGreaterThan(0);
    expect(report.downtimeMs).toBeGreaterThanOrEqual(0);
    expect(progress.length).toBeGreaterThan(0);
    // Exactly one record, on the destination, owning the VM (no migration mark), running.
    expect((await src.records()).records).toEqual([]);
    const [record, ...more] = (await dst.records()).records;
    expect(more).toEqual([]);
    expect(record).toMatchObject({ vmId, status: 'running', config: { name: 'mover' } });
    expect(record?.migration).toBeUndefined();
    // The source guest process is gone; the destination's runs.
    await eventually(() => !alive(srcPid), 5_000, 'the source guest ends');
    const vm = await dst.vm(vmId);
    expect(vm?.status).toBe('running');
    const info = await vm!.info();
    expect(info.status).toBe('running');
    expect(info.pid).not.toBe(srcPid);
    expect(alive(info.pid!)).toBe(true);
    // The counter carries on from where the source stopped, without restarting at 0.
    const dstConsole = (await vm!.console()).path;
    await eventually(async () => (await ticks(dstConsole)).length >= 3, 10_000, 'ticks on the destination console');
    const after = await ticks(dstConsole);
    expect(seen.length).toBeGreaterThanOrEqual(5);
    // The guest stood still (SIGSTOP) from before its counter was read until the source VM was removed: the last
    // tick the watcher saw is the source's last.
    expect(after[0]).toBe((seen.at(-1) as number) + 1);
    expect(after).toEqual(after.map((_, i) => (after[0] as number) + i));
    // The source host forgot it; the destination drives it.
    expect(await src.vm(vmId)).toBeUndefined();
    // Counted on the source, with its downtime.
    const metrics = await (await src.metrics()).metrics();
    expect(metrics).toContain('hvplug_migrations_total{plugin="example-proprietary",outcome="ok"} 1');
    expect(metrics).toContain('hvplug_migration_downtime_seconds_count{plugin="example-proprietary"} 1');
    await vm!.stop({ graceMs: 1_000 });
  });

  it('a refused migration leaves the VM where it was: no record at the destination, the source unmarked and usable', async () => {
    const dir = await tempDir();
    const src = await newHost(dir, 'a');
    const dst = await newHost(dir, 'b');
    const { vmId } = await runningVm(src);
    const vm = (await src.vm(vmId))!;
    // The example plugin leaves a paused VM where it is (the state machine lets it choose).
    await vm.pause();
    await expect(src.migrate(vmId, dst)).rejects.toBeInstanceOf(InvalidStateError);
    expect(await (await src.metrics()).metrics()).toContain('hvplug_migrations_total{plugin="example-proprietary",outcome="InvalidState"} 1');
    expect((await dst.records()).records).toEqual([]);
    const [record] = (await src.records()).records;
    expect(record).toMatchObject({ vmId, status: 'paused' });
    expect(record?.migration).toBeUndefined();
    expect((await vm.resume()).status).toBe('running');
  });

  it('an undecided migration is settled by asking the plugins: the destination wins when its guest runs', async () => {
    const dir = await tempDir();
    let src = await newHost(dir, 'a');
    let dst = await newHost(dir, 'b');
    const { vmId } = await runningVm(src);
    const outgoing = (await src.records()).records[0]!;
    await src.migrate(vmId, dst);
    const incoming = (await dst.records()).records[0]!;
    // Both hosts die between the source's answer and the destination's commit: the records are as they were then.
    await src.close();
    await dst.close();
    await src.store.put({ ...outgoing, migration: { role: 'outgoing', peer: dst.identity, since: new Date().toISOString() } });
    await dst.store.put({ ...incoming, migration: { role: 'incoming', peer: src.identity, since: new Date().toISOString() } });
    src = await newHost(dir, 'a');
    dst = await newHost(dir, 'b');
    // Neither re-attaches it on its own.
    expect((await src.reattach()).migrating).toEqual([{ vmId, role: 'outgoing', peer: dst.identity }]);
    expect((await dst.reattach()).migrating).toEqual([{ vmId, role: 'incoming', peer: src.identity }]);
    expect(await src.resolveMigration(vmId, dst)).toBe('destination');
    expect((await src.records()).records).toEqual([]);
    const records = (await dst.records()).records;
    expect(records.map((r) => [r.vmId, r.status, r.migration])).toEqual([[vmId, 'running', undefined]]);
    expect((await (await dst.attach(vmId))!.info()).status).toBe('running');
  });

  it('an undecided migration whose destination never ran the guest goes back to the source', async () => {
    const dir = await tempDir();
    let src = await newHost(dir, 'a');
    let dst = await newHost(dir, 'b');
    const { vmId, pid } = await runningVm(src);
    const outgoing = (await src.records()).records[0]!;
    // The destination prepared, then both hosts died before the source sent anything.
    await dst.prepareIncoming(vmId, PLUGIN, outgoing.config, src.identity);
    await src.store.put({ ...outgoing, migration: { role: 'outgoing', peer: dst.identity, since: new Date().toISOString() } });
    await src.close();
    await dst.close();
    src = await newHost(dir, 'a');
    dst = await newHost(dir, 'b');
    expect(await dst.resolveMigration(vmId, src)).toBe('source');
    expect((await dst.records()).records).toEqual([]);
    const [record] = (await src.records()).records;
    expect(record).toMatchObject({ vmId, status: 'running' });
    expect(record?.migration).toBeUndefined();
    const info = await (await src.vm(vmId))!.info();
    expect(info).toMatchObject({ status: 'running', pid });
  });
});
