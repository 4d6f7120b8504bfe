import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FileStateStore, PluginHost, PluginExitedError, VmmFailureError, type RecordError, type VmRecord } from 'hvplug';
import { root } from '../../scripts/bundle.mjs';
import { alive, CLI, ensureCliBuilt, eventually, fixture, memoryLogger, onJsonLines, pluginExecutable, processesUnder, removeTempDirs, tempDir } from '../helpers.js';

/**
 * A delete is what the user asked for: a host SIGKILLed in the middle of one must not leave the VM behind as `lost`
 * (its record kept for good, though the plugin deleted it), nor running (the plugin never heard of the delete). The
 * next host finishes it: its plugin is asked to delete the VM, the record and then the lease go, and the re-attach
 * reports it deleted.
 */
const CORE = new URL('../../dist/src/core/index.js', import.meta.url).href;
const HELD = join(root, 'test/fixtures/hosts/delete-held.mjs');
const NAME = 'example-proprietary';
const PLUGIN = { name: NAME, command: pluginExecutable(NAME) };

type Line = { t: 'ready'; vmId: string; guest: number; plugin: number } | { t: 'deleting' } | { t: 'removing' };

const hosts: PluginHost[] = [];
const children: ResultPromise[] = [];
/** Guests a test started: a failed test leaves none running (a host's close() leaves VMs running, by design). */
const guests: number[] = [];

beforeAll(ensureCliBuilt, 120_000);
afterEach(async () => {
  for (const child of children.splice(0)) {
    child.kill('SIGKILL');
    await child.catch(() => undefined);
  }
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  for (const pid of guests.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await removeTempDirs();
});

interface Held {
  stateDir: string;
  runtimeDir: string;
  vmId: string;
  guest: number;
  plugin: number;
  child: ResultPromise;
  /** Resolves at the host's first line of that kind. */
  line: (t: Line['t']) => Promise<void>;
}

/** A host process (test/fixtures/hosts/delete-held.mjs) whose VM runs, waiting to be told to delete it. */
async function heldHost(): Promise<Held> {
  const dir = await tempDir('hvplug-interrupted-delete-');
  const stateDir = join(dir, 'state');
  const runtimeDir = join(dir, 'run');
  const child = execa('node', [HELD, JSON.stringify({ core: CORE, stateDir, runtimeDir, plugin: PLUGIN, vmId: 'doomed' })], {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    reject: false,
  });
  children.push(child);
  const seen = new Map<Line['t'], Line>();
  const waiting = new Map<Line['t'], () => void>();
  onJsonLines<Line>(child.stdout, (l) => {
    seen.set(l.t, l);
    waiting.get(l.t)?.();
  });
  const line = (t: Line['t']): Promise<void> =>
    seen.has(t) ? Promise.resolve() : Promise.race([new Promise<void>((r) => waiting.set(t, r)), child.then((r) => expect.fail(`the host exited before '${t}': ${r.stderr}`))]);
  await line('ready');
  const ready = seen.get('ready') as Extract<Line, { t: 'ready' }>;
  guests.push(ready.guest);
  expect(alive(ready.guest)).toBe(true);
  return { stateDir, runtimeDir, vmId: ready.vmId, guest: ready.guest, plugin: ready.plugin, child, line };
}

async function kill(child: ResultPromise): Promise<void> {
  child.kill('SIGKILL');
  await child;
}

function newHost(stateDir: string, runtimeDir: string, plugin: { name: string; command: string } = PLUGIN): PluginHost {
  const host = new PluginHost({ stateDir, runtimeDir, logger: memoryLogger().logger, plugins: [plugin], supervision: { backoffMs: 20, healthIntervalMs: 0 } });
  hosts.push(host);
  return host;
}

const records = async (stateDir: string): Promise<VmRecord[]> => (await new FileStateStore(stateDir).list()).records;
const leaseOf = (stateDir: string, vmId: string): string => join(stateDir, 'owners', `${vmId}.json`);

/** Neither the guest nor any other process of the run's runtime directory (a guest names its files there). */
async function noGuest(held: Held): Promise<void> {
  await eventually(() => !alive(held.guest) && processesUnder([held.runtimeDir]).length === 0, 10_000, 'no guest of the VM');
}

/** The host dies after the plugin has deleted the VM and answered, before the record is gone. */
async function cutAfterThePluginDeleted(): Promise<Held> {
  const held = await heldHost();
  held.child.stdin?.write('delete\n');
  await held.line('removing');
  // The plugin has done it: the guest ended, its files went.
  expect(alive(held.guest)).toBe(false);
  await kill(held.child);
  await eventually(() => !alive(held.plugin), 10_000, 'the dead host\'s plugin to exit');
  expect((await records(held.stateDir)).map((r) => r.vmId)).toEqual([held.vmId]);
  return held;
}

/** The host dies after it sent vm/delete, which its plugin (stopped meanwhile, then killed) never acted on. */
async function cutBeforeThePluginActed(): Promise<Held> {
  const held = await heldHost();
  process.kill(held.plugin, 'SIGSTOP');
  held.child.stdin?.write('delete\n');
  await held.line('deleting');
  // The host marks the record, then sends the call, which reaches the plugin's stdin at once. The wait for the mark
  // is bounded: a host that marks nothing must fail this test, not hang it.
  const end = Date.now() + 5_000;
  while (Date.now() < end && (await records(held.stateDir))[0]?.deleting === undefined) await new Promise((r) => setTimeout(r, 25));
  await new Promise((r) => setTimeout(r, 300));
  await kill(held.child);
  process.kill(held.plugin, 'SIGKILL');
  await eventually(() => !alive(held.plugin), 10_000, 'the stopped plugin to die');
  expect(alive(held.guest)).toBe(true);
  expect((await records(held.stateDir)).map((r) => r.vmId)).toEqual([held.vmId]);
  return held;
}

/** The next host's re-attach finishes the delete: reported deleted, nothing lost or recovered, no record, no lease. */
async function reattachFinishes(host: PluginHost, held: Held): Promise<void> {
  const report = await host.reattach();
  expect({ lost: report.lost, recovered: report.recovered, deleted: report.deleted, errors: report.errors, records: await records(held.stateDir) }).toEqual({
    lost: [],
    recovered: [],
    deleted: [held.vmId],
    errors: [],
    records: [],
  });
  expect(existsSync(leaseOf(held.stateDir, held.vmId))).toBe(false);
}

describe('a delete cut short by its host\'s SIGKILL', () => {
  it('after the plugin deleted the VM: the next host finishes it, reports it deleted, never lost', async () => {
    const held = await cutAfterThePluginDeleted();
    const host = newHost(held.stateDir, held.runtimeDir);
    const events: string[] = [];
    host.on('vm-lost', (e) => events.push(`lost ${e.vmId}`));
    host.on('vm-deleted', (e) => events.push(`deleted ${e.vmId}`));
    await reattachFinishes(host, held);
    expect(events).toEqual([`deleted ${held.vmId}`]);
    expect(await host.vm(held.vmId)).toBeUndefined();
    await noGuest(held);
    // The id is free again.
    const again = await (await host.hypervisor(NAME)).createVm({ vmId: held.vmId, config: {} });
    await again.delete();
  }, 60_000);

  it('before the plugin acted on it: the next host has the plugin delete the VM, and its guest ends', async () => {
    const held = await cutBeforeThePluginActed();
    const host = newHost(held.stateDir, held.runtimeDir);
    await reattachFinishes(host, held);
    await noGuest(held);
  }, 60_000);

  it('hvplug ps afterwards lists no such VM, and finishes the delete', async () => {
    const held = await cutAfterThePluginDeleted();
    const cli = (args: readonly string[]) =>
      execa('node', [CLI, '--state-dir', held.stateDir, '--runtime-dir', held.runtimeDir, ...args], { reject: false, timeout: 60_000, env: { HVPLUG_CONFIG: '' } });
    const ps = await cli(['ps', '--json']);
    expect({ exitCode: ps.exitCode, stdout: JSON.parse(ps.stdout) as unknown, stderr: ps.stderr }).toEqual({ exitCode: 0, stdout: [], stderr: '' });
    expect(await records(held.stateDir)).toEqual([]);
    expect(existsSync(leaseOf(held.stateDir, held.vmId))).toBe(false);
    await noGuest(held);
  }, 60_000);

  it('hvplug rm of such a VM deletes it (its guest too, when the plugin never acted)', async () => {
    const held = await cutBeforeThePluginActed();
    const rm = await execa('node', [CLI, '--state-dir', held.stateDir, '--runtime-dir', held.runtimeDir, 'rm', '--json', held.vmId], {
      reject: false,
      timeout: 60_000,
      env: { HVPLUG_CONFIG: '' },
    });
    expect({ exitCode: rm.exitCode, stdout: JSON.parse(rm.stdout || 'null') as unknown, stderr: rm.stderr }).toEqual({
      exitCode: 0,
      stdout: { id: held.vmId, deleted: true, pluginReached: true },
      stderr: '',
    });
    expect(await records(held.stateDir)).toEqual([]);
    expect(existsSync(leaseOf(held.stateDir, held.vmId))).toBe(false);
    await noGuest(held);
  }, 60_000);
});

describe('a delete that fails while its host lives', () => {
  it('refused by the plugin: the VM stays as it was, its record unmarked, and can be deleted again', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const host = newHost(stateDir, runtimeDir, { name: 'refuse-delete', command: fixture('refuse-delete') });
    const vm = await (await host.hypervisor('refuse-delete')).createVm({ config: {} });
    const err = await vm.delete().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmmFailureError);
    expect((await records(stateDir)).map((r) => ({ vmId: r.vmId, status: r.status, deleting: r.deleting }))).toEqual([{ vmId: vm.id, status: 'created', deleting: undefined }]);
    // Still usable: started, and what that changed recorded.
    await vm.start();
    expect((await records(stateDir)).map((r) => [r.status, r.deleting])).toEqual([['running', undefined]]);
    await vm.delete();
    expect(await records(stateDir)).toEqual([]);
    expect(existsSync(leaseOf(stateDir, vm.id))).toBe(false);
  });

  it('its plugin process died before answering: the mark stays, and the restarted process finishes the delete', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const host = newHost(stateDir, runtimeDir);
    const deleted: string[] = [];
    host.on('vm-deleted', (e) => deleted.push(e.vmId));
    const vm = await (await host.hypervisor(NAME)).createVm({ config: {} });
    await vm.start();
    const { pid: guest } = await vm.info();
    if (guest !== undefined) guests.push(guest);
    const plugin = (await host.client(NAME))!.pid!;
    process.kill(plugin, 'SIGSTOP');
    const deleting = vm.delete().catch((e: unknown) => e);
    await eventually(async () => (await records(stateDir))[0]?.deleting !== undefined, 10_000, 'the record marked for deletion');
    process.kill(plugin, 'SIGKILL');
    expect(await deleting).toBeInstanceOf(PluginExitedError);
    await eventually(async () => (await records(stateDir)).length === 0, 20_000, 'the restarted plugin to finish the delete');
    expect(deleted).toEqual([vm.id]);
    expect(await host.vm(vm.id)).toBeUndefined();
    expect(existsSync(leaseOf(stateDir, vm.id))).toBe(false);
    await eventually(() => guest === undefined || !alive(guest), 10_000, 'the guest to end');
  }, 60_000);
});

describe('a delete the next host cannot finish', () => {
  it('refused by the plugin: the VM is kept, its record unmarked, and the refusal is in the report\'s errors', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const plugin = { name: 'refuse-delete', command: fixture('refuse-delete') };
    const first = newHost(stateDir, runtimeDir, plugin);
    const vm = await (await first.hypervisor('refuse-delete')).createVm({ vmId: 'stubborn', config: {} });
    await first.close();
    // As a host SIGKILLed during the delete leaves it.
    const store = new FileStateStore(stateDir);
    const [record] = (await store.list()).records;
    await store.put({ ...record!, deleting: 'vm/delete' });

    const host = newHost(stateDir, runtimeDir, plugin);
    // Told as every other VM the re-attach could not settle is: an embedder that logs record-error sees it.
    const told: RecordError[] = [];
    host.on('record-error', (e) => told.push(e));
    const report = await host.reattach();
    expect({ deleted: report.deleted, lost: report.lost, errors: report.errors }).toEqual({
      deleted: [],
      lost: [],
      errors: [{ where: `VM ${vm.id}`, message: expect.stringMatching(/would not let go/) }],
    });
    expect(told).toEqual(report.errors);
    expect((await records(stateDir)).map((r) => [r.vmId, r.deleting])).toEqual([[vm.id, undefined]]);
    const kept = await host.vm(vm.id);
    expect(kept).toBeDefined();
    await kept!.delete();
    expect(await records(stateDir)).toEqual([]);
    expect(existsSync(leaseOf(stateDir, vm.id))).toBe(false);
  });
});
