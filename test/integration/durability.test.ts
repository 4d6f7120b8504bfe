import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileStateStore, PluginHost, type StateStore, type VmRecord } from 'hvplug';
import { fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

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
