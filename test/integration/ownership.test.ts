import { closeSync, constants, existsSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { FileStateStore, PluginHost, UnreadableFileError, VmOwnedError, type RecordError, type StateStore, type VmRecord } from 'hvplug';
import { NameClaims } from '../../src/core/name-claims.js';
import { Owner, VmLeases } from '../../src/core/ownership.js';
import { alive, CLI, ensureCliBuilt, eventually, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

/** One live owner per VM: two hosts on one state directory, as `hvplug run` and `hvplug ps` in two terminals. */
const PLUGIN = 'example-proprietary';
const hosts: PluginHost[] = [];
/** Every held step is let go after a test, so that a failed one cannot leave a host waiting at it. */
const held: (() => void)[] = [];

afterEach(async () => {
  for (const open of held.splice(0)) open();
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  await removeTempDirs();
});

function makeHost(stateDir: string, runtimeDir: string, store?: StateStore): PluginHost {
  const host = new PluginHost({
    stateDir,
    runtimeDir,
    ...(store && { store }),
    logger: memoryLogger().logger,
    plugins: [{ name: PLUGIN, command: pluginExecutable(PLUGIN) }],
    supervision: { backoffMs: 20, healthIntervalMs: 0 },
  });
  hosts.push(host);
  return host;
}

/** A step a test holds: `reached` resolves once the code under test waits at it, `open()` lets it go on. */
function hold(): { reached: Promise<void>; arrive: () => Promise<void>; open: () => void } {
  let arrived!: () => void;
  let open!: () => void;
  const reached = new Promise<void>((r) => (arrived = r));
  const opened = new Promise<void>((r) => (open = r));
  held.push(open);
  return {
    reached,
    open,
    arrive: () => {
      arrived();
      return opened;
    },
  };
}

describe('VM ownership between hosts', () => {
  it('a second host sees a VM another live host drives, never marks it lost, and its mutating calls name the owner', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const first = makeHost(stateDir, runtimeDir);
    const vm = await (await first.hypervisor(PLUGIN)).createVm({ config: {} });
    await vm.start();

    const second = makeHost(stateDir, runtimeDir);
    const lost: string[] = [];
    second.on('vm-lost', ({ vmId }) => lost.push(vmId));
    const report = await second.reattach();
    expect(report.recovered).toEqual([]);
    expect(report.lost).toEqual([]);
    expect(report.owned).toEqual([{ vmId: vm.id, owner: expect.stringContaining(`host process ${process.pid}`) }]);
    const seen = (await second.attach(vm.id))!;
    expect(seen.status).toBe('running');
    expect(seen.ownedBy).toMatch(/host process/);
    const err = await seen.stop().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmOwnedError);
    expect((err as Error).message).toContain(`host process ${process.pid}`);
    expect(lost).toEqual([]);
    expect((await second.records()).records[0]?.status).toBe('running');
    // hvplug ps in another terminal: the VM with its owner, as its record says.
    await ensureCliBuilt();
    const ps = await execa('node', [CLI, '--state-dir', stateDir, '--runtime-dir', runtimeDir, 'ps', '--json'], { reject: false });
    expect(JSON.parse(ps.stdout)).toEqual([expect.objectContaining({ id: vm.id, status: 'running', owner: expect.stringContaining(`host process ${process.pid}`) })]);
    // The owner is undisturbed.
    expect(await vm.check()).toMatchObject({ ok: true });

    // Once the owner lets go, the other host takes the VM over.
    await first.close();
    const third = makeHost(stateDir, runtimeDir);
    const taken = await third.reattach();
    expect(taken.recovered).toEqual([vm.id]);
    const mine = (await third.vm(vm.id))!;
    await mine.stop({ graceMs: 1_000 });
    await mine.delete();
  });

  it('a long-lived host that saw a VM owned elsewhere takes it over once the owner lets go (as the daemon must)', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const owner = makeHost(stateDir, runtimeDir);
    const vm = await (await owner.hypervisor(PLUGIN)).createVm({ config: {} });
    await vm.start();

    const daemon = makeHost(stateDir, runtimeDir);
    expect((await daemon.attach(vm.id))?.ownedBy).toMatch(/host process/);
    await owner.close();
    // The same host, asked again: the lease is free now, so the VM is its own, not still "driven by" the gone owner.
    const again = (await daemon.attach(vm.id))!;
    expect(again.ownedBy).toBeUndefined();
    await again.pause();
    expect(again.status).toBe('paused');
    await again.stop({ graceMs: 1_000 });
    await again.delete();
  });

  it('the lease of a SIGKILLed owner is taken over', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const script = join(dir, 'host.mjs');
    const coreUrl = new URL('../../dist/src/core/index.js', import.meta.url).href;
    await writeFile(
      script,
      `import { PluginHost } from ${JSON.stringify(coreUrl)};
const host = new PluginHost({ stateDir: ${JSON.stringify(stateDir)}, runtimeDir: ${JSON.stringify(runtimeDir)}, logLevel: 'silent',
  plugins: [{ name: ${JSON.stringify(PLUGIN)}, command: ${JSON.stringify(pluginExecutable(PLUGIN))} }] });
const vm = await (await host.hypervisor(${JSON.stringify(PLUGIN)})).createVm({ config: {} });
await vm.start();
console.log(JSON.stringify({ vmId: vm.id, plugin: (await host.client(${JSON.stringify(PLUGIN)})).pid }));
setInterval(() => {}, 1000);
`,
    );
    const child = execa('node', [script], { stdout: 'pipe', stderr: 'ignore', reject: false });
    const out = await new Promise<{ vmId: string; plugin: number }>((resolve) => {
      child.stdout?.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as { vmId: string; plugin: number }));
    });
    // While it lives, it owns the VM.
    const watcher = makeHost(stateDir, runtimeDir);
    expect((await watcher.reattach()).owned.map((o) => o.vmId)).toEqual([out.vmId]);
    await watcher.close();
    child.kill('SIGKILL');
    await child;
    await eventually(() => !alive(out.plugin), 5_000, 'the old plugin to exit');
    const next = makeHost(stateDir, runtimeDir);
    expect((await next.reattach()).recovered).toEqual([out.vmId]);
    const vm = (await next.vm(out.vmId))!;
    await vm.stop({ graceMs: 1_000 });
    await vm.delete();
  });

  it('ps, pause and stop from another process, with and without a daemon, never disturb a VM an embedder drives', async () => {
    await ensureCliBuilt();
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const embedder = makeHost(stateDir, runtimeDir);
    const vm = await (await embedder.hypervisor(PLUGIN)).createVm({ config: { name: 'web' } });
    await vm.start();
    const owner = `host process ${process.pid}`;
    const cli = (args: readonly string[]) =>
      execa('node', [CLI, '--state-dir', stateDir, '--runtime-dir', runtimeDir, ...args], { reject: false, timeout: 60_000, env: { HVPLUG_CONFIG: '' } });

    /** A second terminal's commands: each sees the VM with its owner, and each that would change it is refused naming the owner. */
    const fromAnotherTerminal = async (how: string): Promise<void> => {
      const ps = await cli(['ps', '--json']);
      expect(ps.exitCode, `${how}: ps: ${ps.stderr}`).toBe(0);
      expect(JSON.parse(ps.stdout), how).toEqual([expect.objectContaining({ id: vm.id, name: 'web', status: 'running', owner: expect.stringContaining(owner) })]);
      for (const args of [['pause', vm.id], ['pause', 'web'], ['stop', vm.id], ['stop', '--force', 'web']]) {
        const r = await cli(args);
        expect({ how, args, exitCode: r.exitCode, stdout: r.stdout }).toEqual({ how, args, exitCode: 1, stdout: '' });
        expect(r.stderr, `${how}: ${args.join(' ')}`).toMatch(new RegExp(`^hvplug: VM ${vm.id} is driven by another host: ${owner} on \\S+ \\(since [^)]+\\); only that host may change it$`));
      }
      // The embedder's VM is as it was, and still the embedder's to drive.
      expect(vm.status, how).toBe('running');
      expect(await vm.check(), how).toMatchObject({ ok: true });
      expect((await embedder.records()).records.map((r) => [r.vmId, r.status]), how).toEqual([[vm.id, 'running']]);
    };

    await fromAnotherTerminal('without a daemon');

    const daemon = execa('node', [CLI, '--state-dir', stateDir, '--runtime-dir', runtimeDir, 'daemon'], { reject: false, env: { HVPLUG_CONFIG: '' } });
    try {
      let out = '';
      daemon.stdout?.on('data', (c: Buffer) => (out += c.toString()));
      await eventually(() => out.includes('ready') || daemon.exitCode !== null, 30_000, 'the daemon to be ready');
      expect(out).toContain('ready');
      await fromAnotherTerminal('through the daemon');
    } finally {
      daemon.kill('SIGTERM');
      await daemon;
    }

    // Neither the commands nor the daemon's exit took anything from the embedder.
    await vm.pause();
    await vm.resume();
    expect(await vm.check()).toMatchObject({ ok: true });
    await vm.stop({ graceMs: 1_000 });
    await vm.delete();
  });
});

/**
 * A host deleting VMs while another attaches them (the daemon and an embedder on one state directory). Each race is
 * held at the step where it was lost (a seam of the store), so that it runs the same way every time.
 */
describe('deleting and creating while another host attaches', () => {
  const leaseFile = (stateDir: string, vmId: string): string => join(stateDir, 'owners', `${vmId}.json`);

  it('a VM whose record another host read just before its delete is not brought back as lost by that host', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const owner = makeHost(stateDir, runtimeDir);
    const vm = await (await owner.hypervisor(PLUGIN)).createVm({ config: {} });
    await vm.start();
    const listing = hold();
    class HeldList extends FileStateStore {
      override async list(): Promise<{ records: VmRecord[]; errors: RecordError[] }> {
        const read = await super.list();
        await listing.arrive();
        return read;
      }
    }
    const other = makeHost(stateDir, runtimeDir, new HeldList(stateDir));
    await other.hypervisor(PLUGIN);
    const lost: string[] = [];
    other.on('vm-lost', ({ vmId }) => lost.push(vmId));
    // The other host has read the record (the VM is there) and not yet taken the lease...
    const attaching = other.attach(vm.id);
    await listing.reached;
    // ...when the owner deletes the VM: record and lease go.
    await vm.delete();
    await eventually(() => !existsSync(leaseFile(stateDir, vm.id)), 5_000, 'the lease of the deleted VM to go');
    listing.open();
    expect(await attaching).toBeUndefined();
    expect(lost).toEqual([]);
    expect((await new FileStateStore(stateDir).list()).records).toEqual([]);
    expect(existsSync(leaseFile(stateDir, vm.id))).toBe(false);
  });

  it('while a delete removes the record, the VM stays its owner\'s: another host neither takes nor records it', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const removing = hold();
    class HeldDelete extends FileStateStore {
      override async delete(vmId: string): Promise<void> {
        await removing.arrive();
        return super.delete(vmId);
      }
    }
    const owner = makeHost(stateDir, runtimeDir, new HeldDelete(stateDir));
    const vm = await (await owner.hypervisor(PLUGIN)).createVm({ config: {} });
    await vm.start();
    const other = makeHost(stateDir, runtimeDir);
    await other.hypervisor(PLUGIN);
    const lost: string[] = [];
    other.on('vm-lost', ({ vmId }) => lost.push(vmId));
    // The plugin has deleted the VM; its record is being removed.
    const deleting = vm.delete();
    await removing.reached;
    const seen = await other.attach(vm.id);
    expect(seen?.ownedBy).toMatch(/host process/);
    removing.open();
    await deleting;
    expect(lost).toEqual([]);
    expect((await new FileStateStore(stateDir).list()).records).toEqual([]);
    expect(existsSync(leaseFile(stateDir, vm.id))).toBe(false);
  });

  it('a VM being created is its creator\'s from its first record on: another host attaching it leaves it alone', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const creating = hold();
    class HeldCreate extends FileStateStore {
      override async create(record: VmRecord): Promise<void> {
        await super.create(record);
        await creating.arrive();
      }
    }
    const owner = makeHost(stateDir, runtimeDir, new HeldCreate(stateDir));
    const hv = await owner.hypervisor(PLUGIN);
    const other = makeHost(stateDir, runtimeDir);
    await other.hypervisor(PLUGIN);
    const lost: string[] = [];
    other.on('vm-lost', ({ vmId }) => lost.push(vmId));
    // The pending record is on disk; vm/create has not been sent.
    const created = hv.createVm({ vmId: 'fresh', config: {} });
    await creating.reached;
    expect((await new FileStateStore(stateDir).list()).records.map((r) => [r.vmId, r.pending])).toEqual([['fresh', 'vm/create']]);
    const seen = await other.attach('fresh');
    expect(seen?.ownedBy).toMatch(/host process/);
    creating.open();
    const vm = await created;
    expect(vm.status).toBe('created');
    expect(lost).toEqual([]);
    expect((await new FileStateStore(stateDir).list()).records.map((r) => [r.vmId, r.status, r.pending])).toEqual([['fresh', 'created', undefined]]);
    await vm.delete();
  });
});

/** What a promise comes to within `ms`: its value, the error it failed with, or 'stalled'. */
function within<T>(p: Promise<T>, ms = 5_000): Promise<T | Error | 'stalled'> {
  const stalled = new Promise<'stalled'>((resolve) => setTimeout(() => resolve('stalled'), ms).unref());
  return Promise.race([p.catch((e: unknown) => (e instanceof Error ? e : new Error(String(e)))), stalled]);
}

/** A reader blocked in open() of a FIFO (a thread of the pool, on a defect) is let go by a writer's open. */
function releaseFifoReaders(fifos: readonly string[]): void {
  for (const fifo of fifos) {
    try {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // No reader waiting.
    }
  }
}

describe('a FIFO or a directory where a lease or a name claim belongs', () => {
  it('stalls nothing: taking the lease or the name is refused with UnreadableFileError naming the file', async () => {
    const stateDir = join(await tempDir(), 'state');
    const owners = join(stateDir, 'owners');
    const names = join(stateDir, 'names');
    await mkdir(owners, { recursive: true, mode: 0o700 });
    await mkdir(names, { recursive: true, mode: 0o700 });
    const fifoLease = join(owners, 'x.json');
    const fifoClaim = join(names, createHash('sha256').update('web').digest('hex'));
    await execa('mkfifo', ['-m', '600', fifoLease, fifoClaim]);
    await mkdir(join(owners, 'y.json'));
    try {
      const leases = new VmLeases(stateDir);
      const fifo = await within(leases.acquire('x'));
      expect(fifo).toBeInstanceOf(UnreadableFileError);
      expect(fifo).toMatchObject({ file: fifoLease, message: expect.stringContaining('not a regular file (a FIFO)') });
      const dir = await within(leases.acquire('y'));
      expect(dir).toBeInstanceOf(UnreadableFileError);
      expect(dir).toMatchObject({ file: join(owners, 'y.json'), message: expect.stringContaining('not a regular file (a directory)') });

      const claims = new NameClaims(stateDir, () => Promise.resolve(undefined));
      const claim = await within(claims.claim('web', 'v1'));
      expect(claim).toBeInstanceOf(UnreadableFileError);
      expect(claim).toMatchObject({ file: fifoClaim, message: expect.stringContaining('not a regular file (a FIFO)') });
      // Nothing was taken over: the odd files are left for whoever put them there.
      expect(await within(execa('stat', ['-c', '%F', fifoLease, fifoClaim, join(owners, 'y.json')]).then((r) => r.stdout.split('\n')))).toEqual([
        'fifo',
        'fifo',
        'directory',
      ]);
    } finally {
      releaseFifoReaders([fifoLease, fifoClaim]);
    }
  });

  it('through a host: re-attach of the VM whose lease is a FIFO fails naming it, and a create over a FIFO claim fails; neither stalls', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const first = makeHost(stateDir, runtimeDir);
    const vm = await (await first.hypervisor(PLUGIN)).createVm({ config: {} });
    const fine = await (await first.hypervisor(PLUGIN)).createVm({ config: {} });
    await first.close();
    const fifoLease = join(stateDir, 'owners', `${vm.id}.json`);
    const fifoClaim = join(stateDir, 'names', createHash('sha256').update('web').digest('hex'));
    await mkdir(join(stateDir, 'names'), { recursive: true, mode: 0o700 });
    await execa('mkfifo', ['-m', '600', fifoLease, fifoClaim]);
    try {
      const second = makeHost(stateDir, runtimeDir);
      const report = await within(second.reattach(), 15_000);
      // One VM's lease that cannot be read is that VM's error in the report, never the whole re-attach's.
      if (report === 'stalled') expect.fail('re-attach stalled on a FIFO lease');
      expect(report).not.toBeInstanceOf(Error);
      if (report instanceof Error) return;
      expect({ recovered: report.recovered, errors: JSON.stringify(report.errors) }).toEqual({ recovered: [fine.id], errors: expect.stringContaining(fifoLease) });
      const created = await within((await second.hypervisor(PLUGIN)).createVm({ vmId: 'named', config: { name: 'web' } }), 15_000);
      expect(created).toBeInstanceOf(UnreadableFileError);
      expect((await second.records()).records.map((r) => r.vmId).sort()).toEqual([vm.id, fine.id].sort());
    } finally {
      releaseFifoReaders([fifoLease, fifoClaim]);
    }
  });
});

/** The lease of a host that died before this boot: stale by its boot id, whatever its pid is now. */
function deadOwner(instance: string): Owner {
  return { pid: process.pid, startTime: '1', bootId: 'a-boot-before-this-one', hostname: 'gone', instance, since: '2026-01-01T00:00:00.000Z' };
}

describe('two hosts taking over a dead host\'s leases at once', () => {
  it('one of them gets each VM, even when the other takes the lease over between its read and its takeover', async () => {
    const stateDir = join(await tempDir(), 'state');
    const owners = join(stateDir, 'owners');
    await mkdir(owners, { recursive: true, mode: 0o700 });
    await writeFile(join(owners, 'vm1.json'), JSON.stringify(deadOwner('dead')));
    const late = new VmLeases(stateDir, {
      // The interleaving of the race, made certain: the late host has judged the dead lease stale, and before it
      // acts on that, the quick host takes the VM over whole.
      beforeTakeover: async () => {
        expect(await quick.acquire('vm1')).toEqual({ ok: true });
      },
    });
    const quick = new VmLeases(stateDir);
    expect(await late.acquire('vm1')).toEqual({ ok: false, owner: quick.me });
    expect(JSON.parse(await readFile(join(owners, 'vm1.json'), 'utf8'))).toEqual(quick.me);
    expect(await readdir(owners)).toEqual(['vm1.json']);
  });

  it("a takeover left half done by a host that died (its marker) is taken over in turn", async () => {
    const stateDir = join(await tempDir(), 'state');
    const owners = join(stateDir, 'owners');
    await mkdir(owners, { recursive: true, mode: 0o700 });
    const lease = join(owners, 'vm1.json');
    await writeFile(lease, JSON.stringify(deadOwner('dead')));
    const st = await stat(lease);
    await writeFile(`${lease}.${st.dev}-${st.ino}.takeover`, JSON.stringify(deadOwner('dead-taker')));
    const next = new VmLeases(stateDir);
    expect(await next.acquire('vm1')).toEqual({ ok: true });
    expect(JSON.parse(await readFile(lease, 'utf8'))).toEqual(next.me);
    expect(await readdir(owners)).toEqual(['vm1.json']);
  });

  it('many VMs, both hosts at once: each VM has exactly one owner, the one its lease names', async () => {
    const stateDir = join(await tempDir(), 'state');
    const owners = join(stateDir, 'owners');
    await mkdir(owners, { recursive: true, mode: 0o700 });
    const ids = Array.from({ length: 200 }, (_, i) => `vm${i}`);
    await Promise.all(ids.map((id) => writeFile(join(owners, `${id}.json`), JSON.stringify(deadOwner(`dead-${id}`)))));
    const [a, b] = [new VmLeases(stateDir), new VmLeases(stateDir)];
    const outcomes = await Promise.all(ids.map(async (id) => ({ id, a: (await Promise.all([a.acquire(id), b.acquire(id)])).map((r) => r.ok) })));
    const both = outcomes.filter((o) => o.a[0] && o.a[1]).map((o) => o.id);
    const neither = outcomes.filter((o) => !o.a[0] && !o.a[1]).map((o) => o.id);
    expect({ both, neither }).toEqual({ both: [], neither: [] });
    for (const o of outcomes) {
      const lease = JSON.parse(await readFile(join(owners, `${o.id}.json`), 'utf8')) as Owner;
      expect(lease.instance, o.id).toBe((o.a[0] ? a : b).me.instance);
    }
    expect((await readdir(owners)).sort()).toEqual(ids.map((id) => `${id}.json`).sort());
  });
});
