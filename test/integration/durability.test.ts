import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { FileStateStore, PluginHost, type StateStore, type VmRecord } from 'hvplug';
import { MAX_LISTED_RECORD_BYTES, valueRecord } from '../../src/core/state-store.js';
import { fixture, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

const hosts: PluginHost[] = [];
afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  await removeTempDirs();
});

/** A real file store whose writes take a while, as a loaded disk's fsyncs do. */
class SlowStore implements StateStore {
  constructor(private readonly inner: FileStateStore) {}
  async put(record: VmRecord): Promise<void> {
    await new Promise((r) => setTimeout(r, 150));
    await this.inner.put(record);
  }
  delete(vmId: string): Promise<void> {
    return this.inner.delete(vmId);
  }
  list(): ReturnType<StateStore['list']> {
    return this.inner.list();
  }
}

describe('a call returns once what it changed is on disk', () => {
  it('including what its events carried before its answer', async () => {
    const dir = await tempDir();
    const disk = new FileStateStore(join(dir, 'state'));
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      store: new SlowStore(disk),
      logger: memoryLogger().logger,
      plugins: [{ name: 'p', command: fixture('hostile'), env: { HOSTILE: 'events-first' } }],
      supervision: { healthIntervalMs: 0 },
    });
    hosts.push(host);
    const vm = await (await host.hypervisor('p')).createVm({ config: {} });
    await vm.start();
    // Read straight from disk, as a new host would after this one is SIGKILLed now.
    const record = (await disk.list()).records.find((r) => r.vmId === vm.id);
    expect(record).toMatchObject({ status: 'running', state: { pid: 4242 } });
  });
});

/** What a power loss may leave of a status file written without fsync: nothing, nothing yet, half of it, other bytes. */
const TORN: Record<string, string | undefined> = {
  missing: undefined,
  empty: '',
  truncated: '{"vmId":"v1","rev":"',
  garbage: '\u0000\u0000\u0000\u0000',
  'not a status': JSON.stringify({ vmId: 'v1', status: 'sleeping' }),
};

function record(status: VmRecord['status'], updatedAt = '2026-01-01T00:00:00.000Z'): VmRecord {
  return {
    vmId: 'v1',
    plugin: 'p',
    config: { vcpus: { boot: 1 }, memory: { sizeMiB: 256, hugepages: false, prealloc: false }, devices: [], console: 'log', annotations: {}, plugin: {} },
    state: { pid: 4242 },
    status,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt,
  };
}

describe("a VM's status is volatile: its own file, no fsync; a power loss falls back to the durable record", () => {
  it('FileStateStore: a status-only put leaves the record file alone; a torn, missing or stale status file gives the record', async () => {
    const stateDir = join(await tempDir(), 'state');
    const store = new FileStateStore(stateDir);
    const recordFile = join(stateDir, 'vms', 'v1.json');
    const statusFile = join(stateDir, 'vms', 'v1.status');
    await store.put(record('running'));
    const durable = await readFile(recordFile, 'utf8');
    await store.put(record('paused', '2026-01-01T00:00:01.000Z'));
    expect(await readFile(recordFile, 'utf8')).toBe(durable);
    expect((await store.list()).records).toEqual([record('paused', '2026-01-01T00:00:01.000Z')]);
    expect(await store.get('v1')).toEqual(record('paused', '2026-01-01T00:00:01.000Z'));
    // A host SIGKILLed now: the next one reads the same (the page cache keeps what was renamed in).
    expect(await new FileStateStore(stateDir).list()).toEqual({ records: [record('paused', '2026-01-01T00:00:01.000Z')], errors: [] });
    expect(await new FileStateStore(stateDir).get('v1')).toEqual(record('paused', '2026-01-01T00:00:01.000Z'));

    const written = await readFile(statusFile, 'utf8');
    for (const [what, text] of Object.entries(TORN)) {
      await rm(statusFile, { force: true });
      if (text !== undefined) await writeFile(statusFile, text);
      // The status of the last durable write, nothing reported: a status was never promised past a power loss.
      expect(await new FileStateStore(stateDir).list(), what).toEqual({ records: [record('running')], errors: [] });
      expect(await new FileStateStore(stateDir).get('v1'), what).toEqual(record('running'));
    }

    // One longer than a status file (another writer's, a power loss's) is cut to size by the next status write.
    const other = new FileStateStore(stateDir);
    await other.list();
    await writeFile(statusFile, 'x'.repeat(5000));
    await other.put(record('paused', '2026-01-01T00:00:03.000Z'));
    expect(await readFile(recordFile, 'utf8')).toBe(durable);
    expect((await new FileStateStore(stateDir).list()).records).toEqual([record('paused', '2026-01-01T00:00:03.000Z')]);
    expect(await new FileStateStore(stateDir).get('v1')).toEqual(record('paused', '2026-01-01T00:00:03.000Z'));

    // A durable write after a status write makes that status file stale without touching it.
    await writeFile(statusFile, written);
    await store.put({ ...record('stopped', '2026-01-01T00:00:02.000Z'), state: { pid: null } });
    expect(await readFile(recordFile, 'utf8')).not.toBe(durable);
    expect((await readFile(statusFile, 'utf8')).length).toBeGreaterThan(0);
    expect((await store.list()).records.map((r) => r.status)).toEqual(['stopped']);
    expect((await store.get('v1'))?.status).toBe('stopped');

    await store.delete('v1');
    expect(await readdir(join(stateDir, 'vms'))).toEqual([]);
  });

  it('FileStateStore: a value record (the host\'s) with the last write\'s config and state is a status write; a new config or state, or a new member, is durable', async () => {
    const stateDir = join(await tempDir(), 'state');
    const store = new FileStateStore(stateDir);
    const recordFile = join(stateDir, 'vms', 'v1.json');
    const first = record('running');
    await store.put(valueRecord(first));
    let durable = await readFile(recordFile, 'utf8');
    const onlyStatus = valueRecord({ ...first, status: 'paused', updatedAt: '2026-01-01T00:00:01.000Z' });
    await store.put(onlyStatus);
    expect(await readFile(recordFile, 'utf8')).toBe(durable);
    expect(await new FileStateStore(stateDir).get('v1')).toEqual(onlyStatus);

    const changes: [string, (r: VmRecord) => VmRecord][] = [
      ['a new state', (r) => ({ ...r, state: { pid: 4343 } })],
      ['a new config', (r) => ({ ...r, config: { ...r.config, annotations: { a: 'b' } } })],
      ['a new member', (r) => ({ ...r, pending: 'vm/create' })],
      ['a member less', ({ pending: _pending, ...r }) => r],
      ['a new state of equal JSON', (r) => ({ ...r, state: { pid: 4343 } })],
    ];
    let last: VmRecord = onlyStatus;
    for (const [what, change] of changes) {
      const next = valueRecord(change({ ...last, status: last.status === 'paused' ? 'running' : 'paused' }));
      await store.put(next);
      const text = await readFile(recordFile, 'utf8');
      // An equal state in a new object is compared as JSON: no durable write for it.
      if (what === 'a new state of equal JSON') expect(text, what).toBe(durable);
      else expect(text, what).not.toBe(durable);
      durable = text;
      expect(await new FileStateStore(stateDir).get('v1'), what).toEqual(next);
      last = next;
    }

    // A record not marked as a value is compared as JSON: a config changed in place is written durably.
    const own = record('running');
    await store.put(own);
    durable = await readFile(recordFile, 'utf8');
    own.config.annotations.changed = 'in place';
    own.status = 'paused';
    await store.put(own);
    expect(await readFile(recordFile, 'utf8')).not.toBe(durable);
    expect((await new FileStateStore(stateDir).get('v1'))?.config.annotations).toEqual({ changed: 'in place' });
  });

  it('FileStateStore: a FIFO in place of a status file stalls neither list() nor get(); the record stands', async () => {
    const stateDir = join(await tempDir(), 'state');
    const store = new FileStateStore(stateDir);
    const statusFile = join(stateDir, 'vms', 'v1.status');
    await store.put(record('running'));
    await store.put(record('paused', '2026-01-01T00:00:01.000Z'));
    await rm(statusFile);
    await execa('mkfifo', [statusFile]);
    try {
      const stalled = new Promise<'stalled'>((resolve) => setTimeout(() => resolve('stalled'), 5_000).unref());
      expect(await Promise.race([new FileStateStore(stateDir).list(), stalled])).toEqual({ records: [record('running')], errors: [] });
      expect(await Promise.race([new FileStateStore(stateDir).get('v1'), stalled])).toEqual(record('running'));
    } finally {
      // A reader blocked in open() (a thread of the pool) is let go by a writer's open.
      try {
        closeSync(openSync(statusFile, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // No reader waiting.
      }
    }
  });

  it('FileStateStore: a FIFO, a directory or an over-size file in place of a record stalls nothing; list() names each and why', async () => {
    const stateDir = join(await tempDir(), 'state');
    const store = new FileStateStore(stateDir);
    await store.put(record('running'));
    const vms = join(stateDir, 'vms');
    const fifo = join(vms, 'fifo.json');
    await execa('mkfifo', [fifo]);
    await mkdir(join(vms, 'dir.json'));
    await writeFile(join(vms, 'big.json'), '');
    await truncate(join(vms, 'big.json'), MAX_LISTED_RECORD_BYTES + 1);
    try {
      const stalled = new Promise<'stalled'>((resolve) => setTimeout(() => resolve('stalled'), 5_000).unref());
      expect(await Promise.race([new FileStateStore(stateDir).list(), stalled])).toEqual({
        records: [record('running')],
        errors: [
          { where: join(vms, 'big.json'), message: expect.stringContaining(`bigger than ${MAX_LISTED_RECORD_BYTES} bytes`) },
          { where: join(vms, 'dir.json'), message: expect.stringContaining('not a regular file (a directory)') },
          { where: fifo, message: expect.stringContaining('not a regular file (a FIFO)') },
        ],
      });
      expect(await Promise.race([new FileStateStore(stateDir).get('fifo'), stalled])).toBeUndefined();
    } finally {
      releaseFifoReader(fifo);
    }
  });

  it('through a host: pause and resume rewrite only the status file; after a "power loss" the re-attach asks the plugin', async () => {
    const dir = await tempDir();
    const stateDir = join(dir, 'state');
    const runtimeDir = join(dir, 'run');
    const newHost = (): PluginHost => {
      const host = new PluginHost({
        stateDir,
        runtimeDir,
        logger: memoryLogger().logger,
        plugins: [{ name: 'example-proprietary', command: pluginExecutable('example-proprietary') }],
        supervision: { healthIntervalMs: 0 },
      });
      hosts.push(host);
      return host;
    };
    const first = newHost();
    const vm = await (await first.hypervisor('example-proprietary')).createVm({ config: {} });
    const recordFile = join(stateDir, 'vms', `${vm.id}.json`);
    const statusFile = join(stateDir, 'vms', `${vm.id}.status`);
    try {
      await vm.start();
      const durable = await readFile(recordFile, 'utf8');
      await vm.pause();
      await vm.resume();
      await vm.pause();
      expect(await readFile(recordFile, 'utf8')).toBe(durable);
      // What a host SIGKILLed now leaves to the next one.
      expect((await new FileStateStore(stateDir).list()).records.map((r) => r.status)).toEqual(['paused']);
      await first.close();

      // A power loss tore the status file; the guest (a process of this machine) survived it only in this test.
      await writeFile(statusFile, '{"vmId":');
      const second = newHost();
      expect(await second.records()).toMatchObject({ records: [{ vmId: vm.id, status: 'running' }], errors: [] });
      const report = await second.reattach();
      expect(report).toMatchObject({ recovered: [vm.id], lost: [], errors: [] });
      const again = (await second.vm(vm.id))!;
      expect(again.status).toBe('paused');
      expect((await again.info()).status).toBe('paused');
      await again.delete();
      expect(await readdir(join(stateDir, 'vms'))).toEqual([]);
    } finally {
      // A failure above leaves the guest running: a host on the same directories deletes it.
      if ((await new FileStateStore(stateDir).list()).records.length > 0) {
        const cleanup = newHost();
        await cleanup.reattach();
        await (await cleanup.vm(vm.id))?.delete();
      }
    }
  });
});

/** A reader blocked in open() of a FIFO (a thread of the pool, on a defect) is let go by a writer's open. */
function releaseFifoReader(fifo: string): void {
  try {
    closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
  } catch {
    // No reader waiting.
  }
}
