import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { FileStateStore, PluginHost, StateWriteError, type RecordError, type StateStore } from 'hvplug';
import { NameClaims } from '../../src/core/name-claims.js';
import { VmLeases } from '../../src/core/ownership.js';
import { alive, eventually, fixture, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

/** A real full disk: a tmpfs of its own under the state directory, filled up. */
const root = process.getuid?.() === 0;
const mounts: string[] = [];
const hosts: PluginHost[] = [];

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  for (const m of mounts.splice(0)) await execa('umount', ['-l', m], { reject: false });
  await removeTempDirs();
});

/** A state directory on a 256 KiB tmpfs of its own, unmounted after the test. */
async function smallDisk(): Promise<{ dir: string; stateDir: string }> {
  const dir = await tempDir();
  const stateDir = join(dir, 'state');
  await mkdir(stateDir, { mode: 0o700 });
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', stateDir]);
  mounts.push(stateDir);
  return { dir, stateDir };
}

/** A host of the example plugin whose state directory is a small disk (smallDisk), with the store `store` makes. */
async function exampleOnSmallDisk(store?: (stateDir: string) => StateStore): Promise<{ stateDir: string; host: PluginHost; plugin: string }> {
  const { dir, stateDir } = await smallDisk();
  const plugin = 'example-proprietary';
  const host = new PluginHost({
    stateDir,
    runtimeDir: join(dir, 'run'),
    ...(store && { store: store(stateDir) }),
    logger: memoryLogger().logger,
    plugins: [{ name: plugin, command: pluginExecutable(plugin) }],
    supervision: { healthIntervalMs: 0 },
  });
  hosts.push(host);
  return { stateDir, host, plugin };
}

describe.skipIf(!root)('a full disk (needs root to mount a tmpfs; CI runs as root)', () => {
  it('a record that cannot be written fails its call, is reported, and is written once there is room', async () => {
    const { dir, stateDir } = await smallDisk();
    const host = new PluginHost({
      stateDir,
      runtimeDir: join(dir, 'run'),
      logger: memoryLogger().logger,
      plugins: [{ name: 'p', command: fixture('hostile') }],
      supervision: { healthIntervalMs: 0 },
    });
    hosts.push(host);
    const errors: RecordError[] = [];
    host.on('record-error', (e) => errors.push(e));
    const vm = await (await host.hypervisor('p')).createVm({ config: {} });
    const filler = join(stateDir, 'filler');
    await execa('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4k'], { reject: false });
    const err = await vm.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(String(err)).toMatch(/ENOSPC/);
    expect(errors.some((e) => e.message.includes('ENOSPC'))).toBe(true);
    await rm(filler);
    // Retried until written: the record on disk catches up with the VM.
    await eventually(async () => (await new FileStateStore(stateDir).list()).records[0]?.status === 'running', 15_000, 'the record to be written');
  });

  it('writes queued on a full disk all report the failure; the next one after room returns lands', async () => {
    const { stateDir } = await smallDisk();
    const store = new FileStateStore(stateDir);
    const now = new Date().toISOString();
    const record = {
      vmId: 'v',
      plugin: 'p',
      config: { vcpus: { boot: 1 }, memory: { sizeMiB: 64, hugepages: false, prealloc: false }, devices: [], console: 'log' as const, annotations: {}, plugin: {} },
      status: 'created' as const,
      createdAt: now,
      updatedAt: now,
    };
    await store.put(record);
    const filler = join(stateDir, 'filler');
    await execa('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4k'], { reject: false });
    const first = store.put({ ...record, status: 'running' });
    const second = store.put({ ...record, status: 'paused' });
    const [a, b] = await Promise.allSettled([first, second]);
    // Both were tried on the full disk: neither may claim a write that did not happen.
    expect(a.status).toBe('rejected');
    expect(b.status).toBe('rejected');
    expect(String((b as PromiseRejectedResult).reason)).toMatch(/ENOSPC/);
    expect((await store.list()).records[0]?.status).toBe('created');
    await rm(filler);
    await store.put({ ...record, status: 'paused' });
    expect((await store.list()).records[0]?.status).toBe('paused');
  });

  it('a delete whose record cannot be removed (a read-only state directory) fails, typed; the VM stays known and leased until a delete again succeeds', async () => {
    let readOnly = false;
    let armed = true;
    /** The directory turns read-only at the first removal: after the delete's mark is written and the plugin deleted the VM. */
    class ReadOnlyAtRemoval extends FileStateStore {
      override async delete(vmId: string): Promise<void> {
        if (armed) {
          armed = false;
          // Refused (busy) while a write of the VM's last events holds a file open: tried until it is done.
          await eventually(async () => (await execa('mount', ['-o', 'remount,ro', stateDir], { reject: false })).exitCode === 0, 10_000, 'a read-only remount');
          readOnly = true;
        }
        return super.delete(vmId);
      }
    }
    const { stateDir, host, plugin } = await exampleOnSmallDisk((dir) => new ReadOnlyAtRemoval(dir));
    const errors: RecordError[] = [];
    const deleted: string[] = [];
    host.on('record-error', (e) => errors.push(e));
    host.on('vm-deleted', (e) => deleted.push(e.vmId));
    const vm = await (await host.hypervisor(plugin)).createVm({ vmId: 'ro', config: { name: 'ro-name' } });
    await vm.start();
    try {
      const err = await vm.delete().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StateWriteError);
      expect((err as StateWriteError).vmId).toBe('ro');
      expect((err as Error).message).toMatch(/record could not be removed/);
      expect((err as Error).message).toMatch(/EROFS/);
      expect((err as Error).message).toMatch(/delete it again/);
      expect(errors.some((e) => e.message.includes('cannot remove the record'))).toBe(true);
      expect(deleted).toEqual([]);
      // Its plugin has let it go; the host keeps it (lost), its record and its lease, so no other host takes it over.
      // The record keeps the delete's mark: a host that dies now leaves the next one the delete to finish.
      expect((await host.vm('ro'))?.status).toBe('lost');
      expect((await new FileStateStore(stateDir).list()).records.map((r) => [r.vmId, r.deleting])).toEqual([['ro', 'vm/delete']]);
      expect(existsSync(join(stateDir, 'owners', 'ro.json'))).toBe(true);
      await execa('mount', ['-o', 'remount,rw', stateDir]);
      readOnly = false;
      await (await host.vm('ro'))!.delete();
      expect(deleted).toEqual(['ro']);
      expect(await host.vm('ro')).toBeUndefined();
      expect((await new FileStateStore(stateDir).list()).records).toEqual([]);
      expect(existsSync(join(stateDir, 'owners', 'ro.json'))).toBe(false);
    } finally {
      if (readOnly) await execa('mount', ['-o', 'remount,rw', stateDir], { reject: false });
    }
  });

  it('a delete whose mark cannot be written (a read-only state directory) fails, typed, before anything is sent: the VM runs on, unmarked', async () => {
    const { stateDir, host, plugin } = await exampleOnSmallDisk();
    const vm = await (await host.hypervisor(plugin)).createVm({ vmId: 'kept', config: {} });
    await vm.start();
    const { pid: guest } = await vm.info();
    await execa('mount', ['-o', 'remount,ro', stateDir]);
    let readOnly = true;
    try {
      const err = await vm.delete().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StateWriteError);
      expect((err as Error).message).toMatch(/could not be marked for deletion/);
      expect((err as Error).message).toMatch(/EROFS/);
      expect((err as Error).message).toMatch(/Nothing was sent to its plugin/);
      expect(guest !== undefined && alive(guest)).toBe(true);
      expect((await new FileStateStore(stateDir).list()).records.map((r) => [r.vmId, r.status, r.deleting])).toEqual([['kept', 'running', undefined]]);
      await execa('mount', ['-o', 'remount,rw', stateDir]);
      readOnly = false;
      // Calls on the VM wait for its record's retried write (unmarked), as after any write that failed.
      expect(await vm.info()).toMatchObject({ status: 'running', pid: guest });
      await vm.delete();
      expect((await new FileStateStore(stateDir).list()).records).toEqual([]);
      expect(existsSync(join(stateDir, 'owners', 'kept.json'))).toBe(false);
    } finally {
      if (readOnly) await execa('mount', ['-o', 'remount,rw', stateDir], { reject: false });
      // A host's close() leaves VMs running: a failed run leaves no guest behind.
      if (guest !== undefined && alive(guest)) process.kill(guest, 'SIGKILL');
    }
  });

  // 0 pages: the lease cannot be written; 1 page: the lease can, the record cannot.
  it.each([0, 1])('a create whose lease or record does not fit (%i pages free) fails, typed, and leaves nothing: the id can be created again', async (free) => {
    const { stateDir, host, plugin } = await exampleOnSmallDisk();
    const hv = await host.hypervisor(plugin);
    // The state directory's own directories (vms, owners) exist, as they do once a VM has been made.
    await (await hv.createVm({ config: {} })).delete();
    const fill = join(stateDir, 'fill');
    await mkdir(fill);
    let pages = 0;
    try {
      for (;;) await writeFile(join(fill, String(pages++)), Buffer.alloc(4096));
    } catch {
      // Full.
    }
    for (let i = 0; i < free; i++) await rm(join(fill, String(i)));
    const err = await hv.createVm({ vmId: 'v2', config: {} }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StateWriteError);
    expect((err as StateWriteError).vmId).toBe('v2');
    expect((err as Error).message).toMatch(/ENOSPC/);
    expect((err as Error).message).toMatch(/create it again/);
    expect(await host.vm('v2')).toBeUndefined();
    expect((await new FileStateStore(stateDir).list()).records).toEqual([]);
    expect((await readdir(join(stateDir, 'owners'))).filter((f) => f === 'v2.json')).toEqual([]);
    await rm(fill, { recursive: true });
    const vm = await hv.createVm({ vmId: 'v2', config: {} });
    expect((await new FileStateStore(stateDir).list()).records.map((r) => [r.vmId, r.status, r.pending])).toEqual([['v2', 'created', undefined]]);
    await vm.delete();
  });

  it('a lease or a name claim that cannot be written fails with ENOSPC and leaves no temp file behind', async () => {
    const { stateDir } = await smallDisk();
    const leases = new VmLeases(stateDir);
    const claims = new NameClaims(stateDir, () => Promise.resolve(undefined));
    // Their directories made while there is room.
    expect(await leases.acquire('first')).toEqual({ ok: true });
    await leases.release('first');
    await claims.claim('first', 'first');
    await claims.release('first', 'first');
    const filler = join(stateDir, 'filler');
    await execa('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4k'], { reject: false });
    expect(String(await leases.acquire('v1').catch((e: unknown) => e))).toMatch(/ENOSPC/);
    expect(String(await claims.claim('web', 'v1').catch((e: unknown) => e))).toMatch(/ENOSPC/);
    expect({ owners: await readdir(join(stateDir, 'owners')), names: await readdir(join(stateDir, 'names')) }).toEqual({ owners: [], names: [] });
    await rm(filler);
    expect(await leases.acquire('v1')).toEqual({ ok: true });
  });
});
