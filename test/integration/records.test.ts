import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AlreadyExistsError, FileStateStore, PluginHost, type ShimHypervisor, type StateStore, type VmRecord } from 'hvplug';
import { NameClaims } from '../../src/core/name-claims.js';
import { VmLeases } from '../../src/core/ownership.js';
import { fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

const hosts: PluginHost[] = [];

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  await removeTempDirs();
});

async function probeHost(stateDir: string, runtimeDir: string): Promise<PluginHost> {
  const host = new PluginHost({
    stateDir,
    runtimeDir,
    plugins: [
      { name: 'probe', command: fixture('probe') },
      { name: 'probe2', command: fixture('probe') },
    ],
    logger: memoryLogger().logger,
  });
  hosts.push(host);
  return host;
}

async function received(hv: ShimHypervisor): Promise<string[]> {
  return (await hv.extension('x-probe/received')) as string[];
}

/** A record an earlier host left: its guest still runs, a later host must be able to re-attach to it. */
function victimRecord(): VmRecord {
  const at = '2026-01-01T00:00:00.000Z';
  return {
    vmId: 'victim',
    plugin: 'probe',
    config: { name: 'victim', vcpus: { boot: 1 }, memory: { sizeMiB: 256, hugepages: false, prealloc: false }, devices: [], console: 'log', annotations: {}, plugin: {} },
    status: 'running',
    state: { pid: 4242 },
    createdAt: at,
    updatedAt: at,
  };
}

async function withVictim(): Promise<{ host: PluginHost; stateDir: string }> {
  const dir = await tempDir();
  const stateDir = join(dir, 'state');
  await new FileStateStore(stateDir).put(victimRecord());
  return { host: await probeHost(stateDir, join(dir, 'run')), stateDir };
}

describe('a VM id that has a record', () => {
  it('vm/create the plugin would refuse: AlreadyExists before anything is sent, the record kept', async () => {
    const { host, stateDir } = await withVictim();
    const hv = await host.hypervisor('probe');
    // A device the probe does not support: refused, and before the fix the refusal deleted the victim's record.
    const err = await hv.createVm({ vmId: 'victim', config: { devices: [{ type: 'vsock', id: 'v0', guestCid: 3 }] } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect((err as AlreadyExistsError).id).toBe('victim');
    expect(await received(hv)).not.toContain('vm/create');
    expect((await new FileStateStore(stateDir).list()).records).toEqual([victimRecord()]);
  });

  it('vm/create the plugin would accept: AlreadyExists, the record not overwritten', async () => {
    const { host, stateDir } = await withVictim();
    const hv = await host.hypervisor('probe2');
    await expect(hv.createVm({ vmId: 'victim', config: { name: 'intruder' } })).rejects.toBeInstanceOf(AlreadyExistsError);
    expect(await received(hv)).not.toContain('vm/create');
    expect((await new FileStateStore(stateDir).list()).records).toEqual([victimRecord()]);
    expect(hv.vm('victim')).toBeUndefined();
  });

  it('vm/restore with a recorded vmId: AlreadyExists, the record kept', async () => {
    const { host, stateDir } = await withVictim();
    const hv = await host.hypervisor('probe');
    await expect(hv.restoreVm({ vmId: 'victim', config: {}, path: '/nonexistent/snap' })).rejects.toBeInstanceOf(AlreadyExistsError);
    expect((await new FileStateStore(stateDir).list()).records).toEqual([victimRecord()]);
  });

  it('the recorded VM can still be re-attached afterwards', async () => {
    const { host } = await withVictim();
    const hv = await host.hypervisor('probe');
    await expect(hv.createVm({ vmId: 'victim', config: {} })).rejects.toBeInstanceOf(AlreadyExistsError);
    const report = await host.reattach();
    // The probe cannot re-attach (no vm/recover): lost, but still known and still recorded.
    expect(report.lost.map((l) => l.vmId)).toEqual(['victim']);
    expect((await host.records()).records.map((r) => r.vmId)).toEqual(['victim']);
  });
});

describe('two creates of one id in one host', () => {
  it('on two plugins at once: one VM, one AlreadyExists, the record is the winner’s', async () => {
    const dir = await tempDir();
    const host = await probeHost(join(dir, 'state'), join(dir, 'run'));
    const [a, b] = await Promise.all([host.hypervisor('probe'), host.hypervisor('probe2')]);
    const results = await Promise.allSettled([a.createVm({ vmId: 'twin', config: { name: 'a' } }), b.createVm({ vmId: 'twin', config: { name: 'b' } })]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toBeInstanceOf(AlreadyExistsError);
    const winner = results[0]!.status === 'fulfilled' ? 'probe' : 'probe2';
    const { records } = await host.records();
    expect(records.map((r) => [r.vmId, r.plugin, r.config.name])).toEqual([['twin', winner, winner === 'probe' ? 'a' : 'b']]);
    expect((await host.vm('twin'))?.hypervisor).toBe(winner === 'probe' ? a : b);
  });

  it('on one plugin at once: one VM, one AlreadyExists, the record kept', async () => {
    const dir = await tempDir();
    const host = await probeHost(join(dir, 'state'), join(dir, 'run'));
    const hv = await host.hypervisor('probe');
    const results = await Promise.allSettled([hv.createVm({ vmId: 'twin', config: {} }), hv.createVm({ vmId: 'twin', config: {} })]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!;
    expect(rejected.reason).toBeInstanceOf(AlreadyExistsError);
    expect((await host.records()).records.map((r) => r.vmId)).toEqual(['twin']);
    expect(hv.vm('twin')?.status).toBe('created');
  });

  it('an id freed by vm/delete can be created again', async () => {
    const dir = await tempDir();
    const host = await probeHost(join(dir, 'state'), join(dir, 'run'));
    const hv = await host.hypervisor('probe');
    const vm = await hv.createVm({ vmId: 'again', config: {} });
    await vm.delete();
    expect((await host.records()).records).toEqual([]);
    await hv.createVm({ vmId: 'again', config: {} });
    expect((await host.records()).records.map((r) => r.vmId)).toEqual(['again']);
  });
});

describe('FileStateStore.create', () => {
  it('two stores on one directory (two hosts) creating one id: one record, one AlreadyExists, no temp files left', async () => {
    const dir = await tempDir();
    const [a, b] = [new FileStateStore(dir), new FileStateStore(dir)];
    const results = await Promise.allSettled([a.create({ ...victimRecord(), plugin: 'a' }), b.create({ ...victimRecord(), plugin: 'b' })]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!;
    expect(rejected.reason).toBeInstanceOf(AlreadyExistsError);
    const winner = results[0]!.status === 'fulfilled' ? 'a' : 'b';
    expect((await a.list()).records.map((r) => r.plugin)).toEqual([winner]);
    expect((await readdir(join(dir, 'vms'))).sort()).toEqual(['victim.json']);
    expect((await stat(join(dir, 'vms', 'victim.json'))).mode & 0o777).toBe(0o600);
  });
});

describe('a VM name whose holder\'s record cannot be read', () => {
  it('stays held: a torn record refuses the name naming its file; only a record truly gone frees it', async () => {
    const stateDir = join(await tempDir(), 'state');
    await new FileStateStore(stateDir).create({ ...victimRecord(), vmId: 'old', config: { ...victimRecord().config, name: 'web' } });
    const file = join(stateDir, 'vms', 'old.json');
    const whole = await readFile(file, 'utf8');
    await writeFile(file, whole.slice(0, 40));

    const store = new FileStateStore(stateDir);
    const err = await store.create({ ...victimRecord(), vmId: 'new', config: { ...victimRecord().config, name: 'web' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect((err as Error).message).toContain(file);
    // Repaired, the old VM is the only one named so; the refused one left no record.
    await writeFile(file, whole);
    expect((await store.list()).records.map((r) => [r.vmId, r.config.name])).toEqual([['old', 'web']]);

    // Gone for good (removed by hand): its claim is stale, and the name is free.
    await rename(file, join(stateDir, 'old.json.bak'));
    await store.create({ ...victimRecord(), vmId: 'new', config: { ...victimRecord().config, name: 'web' } });
    expect((await store.list()).records.map((r) => [r.vmId, r.config.name])).toEqual([['new', 'web']]);
  });
});

describe('two hosts creating one name over a stale claim (its VM\'s record gone)', () => {
  it('one gets it, even when the other takes the claim over between its judgement and its takeover', async () => {
    const stateDir = join(await tempDir(), 'state');
    const names = join(stateDir, 'names');
    const claimFile = join(names, createHash('sha256').update('web').digest('hex'));
    await mkdir(names, { recursive: true, mode: 0o700 });
    await writeFile(claimFile, JSON.stringify({ name: 'web', vmId: 'gone' }));
    // Records: the two new VMs bear the name; the old holder has none.
    const nameOf = (vmId: string): Promise<string | undefined> => Promise.resolve(vmId === 'gone' ? undefined : 'web');
    const quick = new NameClaims(stateDir, nameOf);
    const late = new NameClaims(stateDir, nameOf, {
      // The interleaving of the race, made certain: the late host has judged the claim stale, and before it acts on
      // that, the quick host takes the name over whole.
      beforeTakeover: () => quick.claim('web', 'quick'),
    });
    const err = await late.claim('web', 'late').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect(JSON.parse(await readFile(claimFile, 'utf8'))).toEqual({ name: 'web', vmId: 'quick' });
    expect(await readdir(names)).toEqual([claimFile.slice(names.length + 1)]);
  });

  it('many names, two stores at once: each name is created once, by the store its claim names', async () => {
    const stateDir = join(await tempDir(), 'state');
    const ids = Array.from({ length: 100 }, (_, i) => i);
    const old = new FileStateStore(stateDir);
    for (const i of ids) await old.create({ ...victimRecord(), vmId: `old-${i}`, config: { ...victimRecord().config, name: `name-${i}` } });
    // Records removed by hand: their claims are stale.
    for (const i of ids) await rename(join(stateDir, 'vms', `old-${i}.json`), join(stateDir, `old-${i}.json.bak`));
    const [a, b] = [new FileStateStore(stateDir), new FileStateStore(stateDir)];
    const make = (store: FileStateStore, tag: string, i: number): Promise<boolean> =>
      store.create({ ...victimRecord(), vmId: `${tag}-${i}`, config: { ...victimRecord().config, name: `name-${i}` } }).then(
        () => true,
        (e: unknown) => {
          if (e instanceof AlreadyExistsError) return false;
          throw e;
        },
      );
    const outcomes = await Promise.all(ids.map(async (i) => ({ i, won: await Promise.all([make(a, 'a', i), make(b, 'b', i)]) })));
    expect(outcomes.filter((o) => o.won[0] === o.won[1])).toEqual([]);
    const { records, errors } = await a.list();
    expect(errors).toEqual([]);
    expect(records.map((r) => [r.config.name, r.vmId]).sort()).toEqual(outcomes.map((o) => [`name-${o.i}`, `${o.won[0] ? 'a' : 'b'}-${o.i}`]).sort());
  });
});

describe('a lease, claim or record that fails to read for a reason other than absence', () => {
  // ELOOP (a symlink to itself) stands in for EMFILE, EACCES or EIO: each says nothing of whether the file is there.
  const loop = async (file: string): Promise<void> => {
    await rm(file, { force: true });
    await symlink(file, file);
  };

  it('is an error, never taken for no file: no name given away, none left behind, no lease let go unseen', async () => {
    const stateDir = join(await tempDir(), 'state');
    const named = (vmId: string, name: string): VmRecord => ({ ...victimRecord(), vmId, config: { ...victimRecord().config, name } });
    const store = new FileStateStore(stateDir);
    await store.create(named('old', 'web'));
    await store.create(named('other', 'db'));

    // The holder's record: its name is not free.
    const oldRecord = join(stateDir, 'vms', 'old.json');
    const whole = await readFile(oldRecord, 'utf8');
    await loop(oldRecord);
    expect(String(await store.create(named('new', 'web')).catch((e: unknown) => e))).toMatch(/ELOOP/);
    await rm(oldRecord);
    await writeFile(oldRecord, whole);

    // The name's claim: deleting its VM fails, and keeps the record, rather than leave the claim behind unseen.
    const claim = join(stateDir, 'names', createHash('sha256').update('db').digest('hex'));
    await loop(claim);
    expect(String(await store.delete('other').catch((e: unknown) => e))).toMatch(/ELOOP/);
    expect((await store.list()).records.map((r) => r.vmId)).toEqual(['old', 'other']);

    // The lease: releasing it fails, and the host still holds it, rather than forget it unseen.
    const leases = new VmLeases(stateDir);
    expect(await leases.acquire('v1')).toEqual({ ok: true });
    const lease = join(stateDir, 'owners', 'v1.json');
    const mine = await readFile(lease, 'utf8');
    await loop(lease);
    expect(String(await leases.release('v1').catch((e: unknown) => e))).toMatch(/ELOOP/);
    await rm(lease);
    await writeFile(lease, mine);
    await leases.release('v1');
    expect(await readdir(join(stateDir, 'owners'))).toEqual([]);
  });
});

describe('FileStateStore.get', () => {
  it("gives list()'s record of one id from its own file, and nothing for what that file alone cannot tell", async () => {
    const dir = await tempDir();
    const store = new FileStateStore(dir);
    const other: VmRecord = { ...victimRecord(), vmId: 'other', config: { ...victimRecord().config, name: 'other' } };
    await store.put(victimRecord());
    await store.put(other);
    await store.put({ ...other, status: 'paused' });
    const { records } = await store.list();
    for (const s of [store, new FileStateStore(dir)]) {
      expect(await s.get('victim')).toEqual(records.find((r) => r.vmId === 'victim'));
      expect(await s.get('other')).toEqual(records.find((r) => r.vmId === 'other'));
      expect((await s.get('other'))?.status).toBe('paused');
    }
    const vms = join(dir, 'vms');
    // Not an id (a path out of the directory), no file, a file of another id, not a record: list() has the last word.
    for (const vmId of ['../vms/victim', 'victim.json', 'nosuch', '']) expect(await store.get(vmId), vmId).toBeUndefined();
    await rename(join(vms, 'other.json'), join(vms, 'moved.json'));
    expect(await store.get('moved')).toBeUndefined();
    expect(await store.get('other')).toBeUndefined();
    // list() does not take it either: a record under another VM's file name is reported, not listed.
    const listed = await store.list();
    expect(listed.records.map((r) => r.vmId)).toEqual(['victim']);
    expect(listed.errors).toEqual([{ where: join(vms, 'moved.json'), message: expect.stringMatching(/holds the record of VM other, not of moved/) }]);
    await writeFile(join(vms, 'junk.json'), '{"vmId":"junk"}');
    expect(await store.get('junk')).toBeUndefined();
    // A FIFO in a record's place neither stalls the read nor is taken for a record.
    execFileSync('mkfifo', [join(vms, 'fifo.json')]);
    expect(await store.get('fifo')).toBeUndefined();
  });
});

describe('FileStateStore status files', () => {
  it("writes a VM's status into its own file, never through a symlink put in its place (to another VM's record)", async () => {
    const dir = await tempDir();
    const vms = join(dir, 'vms');
    const other: VmRecord = { ...victimRecord(), vmId: 'other', config: { ...victimRecord().config, name: 'other' } };
    const otherBytes = async (): Promise<string> => readFile(join(vms, 'other.json'), 'utf8');
    for (const fresh of [false, true]) {
      let store = new FileStateStore(dir);
      await store.put(victimRecord());
      await store.put(other);
      // The status file is made by the first status-only write, and written in place from then on.
      await store.put({ ...victimRecord(), status: 'paused' });
      const before = await otherBytes();
      await rm(join(vms, 'victim.status'));
      await symlink('other.json', join(vms, 'victim.status'));
      // The same store (which wrote the file in place before), or a new one reading the directory afresh.
      if (fresh) store = new FileStateStore(dir);
      await store.put({ ...victimRecord(), status: fresh ? 'running' : 'paused', updatedAt: '2026-01-02T00:00:00.000Z' }).catch(() => undefined);
      expect(await otherBytes()).toBe(before);
      const { records, errors } = await new FileStateStore(dir).list();
      expect(errors).toEqual([]);
      expect(records.find((r) => r.vmId === 'other')).toEqual(other);
      await rm(vms, { recursive: true });
    }
  });
});

describe('a store without create()', () => {
  it('still refuses a recorded id (list, then put) and keeps the record', async () => {
    const records = new Map<string, VmRecord>([['victim', victimRecord()]]);
    const store: StateStore = {
      put: (r) => Promise.resolve(void records.set(r.vmId, r)),
      delete: (id) => Promise.resolve(void records.delete(id)),
      list: () => Promise.resolve({ records: [...records.values()], errors: [] }),
    };
    const dir = await tempDir();
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      store,
      plugins: [{ name: 'probe', command: fixture('probe') }],
      logger: memoryLogger().logger,
    });
    hosts.push(host);
    const hv = await host.hypervisor('probe');
    await expect(hv.createVm({ vmId: 'victim', config: {} })).rejects.toBeInstanceOf(AlreadyExistsError);
    expect(records.get('victim')).toEqual(victimRecord());
    await hv.createVm({ vmId: 'fresh', config: {} });
    expect([...records.keys()].sort()).toEqual(['fresh', 'victim']);
  });
});
