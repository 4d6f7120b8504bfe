import { chmod, copyFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileStateStore, PluginFailedError, PluginHost, type VmRecord } from 'hvplug';
import { alive, eventually, fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

const hosts: PluginHost[] = [];

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  await removeTempDirs();
});

function record(vmId: string): VmRecord {
  const now = new Date().toISOString();
  return {
    vmId,
    plugin: 'p',
    config: { vcpus: { boot: 1 }, memory: { sizeMiB: 256, hugepages: false, prealloc: false }, devices: [], console: 'log', annotations: {}, plugin: {} },
    status: 'running',
    state: { pid: 42 },
    createdAt: now,
    updatedAt: now,
  };
}

describe('state store', () => {
  it('writes records atomically, 0600 files in a 0700 directory, and reads them back', async () => {
    const dir = await tempDir();
    const store = new FileStateStore(dir);
    await Promise.all([store.put(record('a')), store.put(record('b')), store.put({ ...record('a'), status: 'paused' })]);
    const { records, errors } = await store.list();
    expect(errors).toEqual([]);
    expect(records.map((r) => [r.vmId, r.status])).toEqual([
      ['a', 'paused'],
      ['b', 'running'],
    ]);
    expect((await stat(join(dir, 'vms'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, 'vms', 'a.json'))).mode & 0o777).toBe(0o600);
    expect((await readdir(join(dir, 'vms'))).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    await store.delete('a');
    expect((await store.list()).records.map((r) => r.vmId)).toEqual(['b']);
  });

  it('reports a corrupt or half-written record without losing the others', async () => {
    const dir = await tempDir();
    const store = new FileStateStore(dir);
    await store.put(record('good'));
    await writeFile(join(dir, 'vms', 'half.json'), '{"vmId":"half","plug');
    await writeFile(join(dir, 'vms', 'wrong.json'), JSON.stringify({ vmId: 'wrong' }));
    const { records, errors } = await store.list();
    expect(records.map((r) => r.vmId)).toEqual(['good']);
    expect(errors.map((e) => e.where.split('/').pop())).toEqual(['half.json', 'wrong.json']);
    expect(errors[0]!.message).toMatch(/unreadable/);
    expect(errors[1]!.message).toMatch(/plugin/);
  });

  it("reports a record under another VM's file name instead of listing that VM twice or for good", async () => {
    const dir = await tempDir();
    const store = new FileStateStore(dir);
    await store.put(record('a'));
    // A copy left under another name (a restore by hand, a bad sync): delete('a') could never remove it.
    await copyFile(join(dir, 'vms', 'a.json'), join(dir, 'vms', 'z.json'));
    const { records, errors } = await store.list();
    expect(records.map((r) => r.vmId)).toEqual(['a']);
    expect(errors).toEqual([{ where: join(dir, 'vms', 'z.json'), message: "holds the record of VM a, not of z (each VM's record is <vmId>.json)" }]);
    await store.delete('a');
    expect((await store.list()).records).toEqual([]);
  });

  it('keeps the last of a burst of writes', async () => {
    const dir = await tempDir();
    const store = new FileStateStore(dir);
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.put({ ...record('x'), state: { i } })));
    expect((await store.list()).records[0]!.state).toEqual({ i: 49 });
  });
});

describe('supervision', () => {
  async function host(plugin: string, extra: ConstructorParameters<typeof PluginHost>[0] = {}): Promise<PluginHost> {
    const dir = await tempDir();
    const h = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      logger: memoryLogger().logger,
      plugins: [{ name: plugin, command: fixture(plugin) }],
      ...extra,
    });
    hosts.push(h);
    return h;
  }

  it('restarts a crashed plugin and calls go through again', async () => {
    const h = await host('probe', { supervision: { backoffMs: 10, healthIntervalMs: 0 } });
    const hv = await h.hypervisor('probe');
    const first = (await h.client('probe'))!.pid;
    const restarted = new Promise((r) => h.once('plugin-restarted', r));
    process.kill(first, 'SIGKILL');
    await restarted;
    const second = (await h.client('probe'))!.pid;
    expect(second).not.toBe(first);
    expect(await hv.extension('x-probe/echo', { again: true })).toEqual({ again: true });
  });

  it('a crash loop ends in the failed state with the plugin\'s last stderr lines', async () => {
    const h = await host('crashy', { supervision: { backoffMs: 10, maxRestarts: 3, healthIntervalMs: 0 } });
    const failed = new Promise<PluginFailedError>((r) => h.once('plugin-failed', (e) => r(e.error)));
    const hv = await h.hypervisor('crashy');
    const err = await failed;
    expect(err).toBeInstanceOf(PluginFailedError);
    expect(err.message).toMatch(/4 crashes/);
    expect(err.message).toContain('fatal: licence server unreachable');
    await expect(hv.invoke('health/ping', {})).rejects.toBeInstanceOf(PluginFailedError);
  });

  it('a plugin that stops answering health pings is killed and restarted', async () => {
    const h = await host('probe', { supervision: { backoffMs: 10, healthIntervalMs: 100, healthTimeoutMs: 300 } });
    const hv = await h.hypervisor('probe');
    const first = (await h.client('probe'))!.pid;
    const unhealthy = new Promise((r) => h.once('plugin-unhealthy', r));
    const restarted = new Promise((r) => h.once('plugin-restarted', r));
    process.kill(first, 'SIGSTOP');
    await unhealthy;
    await restarted;
    await eventually(() => !alive(first), 5_000, 'hung plugin killed');
    expect(await hv.extension('x-probe/echo', { ok: true })).toEqual({ ok: true });
  });

  it('per-vm isolation runs one process per VM and a crash touches no other VM', async () => {
    const dir = await tempDir();
    const h = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      logger: memoryLogger().logger,
      plugins: [{ name: 'probe', command: fixture('probe'), isolation: 'per-vm' }],
      supervision: { backoffMs: 10, healthIntervalMs: 0 },
    });
    hosts.push(h);
    const hv = await h.hypervisor('probe');
    const a = await hv.createVm({ config: {} });
    const b = await hv.createVm({ config: {} });
    const pa = (await h.processOf(a.id))!.pid!;
    const pb = (await h.processOf(b.id))!.pid!;
    expect(new Set([pa, pb, (await h.client('probe'))!.pid]).size).toBe(3);
    const pending = b.wait(undefined, { timeoutMs: null });
    process.kill(pa, 'SIGKILL');
    await eventually(() => !alive(pa));
    // b's plugin is untouched: its long call is still pending and its process is the same.
    const settled = await Promise.race([pending.then(() => 'settled', () => 'settled'), new Promise((r) => setTimeout(() => r('pending'), 300))]);
    expect(settled).toBe('pending');
    expect((await h.processOf(b.id))!.pid).toBe(pb);
    await b.delete();
    await eventually(() => !alive(pb), 5_000, 'per-VM process released after delete');
  });
});

describe('plugin config file', () => {
  it('reads [plugins.<name>] tables from TOML and reports a bad one with its path', async () => {
    const dir = await tempDir();
    const good = join(dir, 'good.toml');
    await writeFile(good, `[plugins.probe]\ncommand = ${JSON.stringify(fixture('probe'))}\nisolation = "shared"\nenvPassthrough = ["FOO"]\n`);
    const h = new PluginHost({ stateDir: dir, runtimeDir: dir, configFile: good, logger: memoryLogger().logger });
    hosts.push(h);
    const spec = await h.catalog.resolve('probe');
    expect(spec).toMatchObject({ command: fixture('probe'), envPassthrough: ['FOO'], source: good });
    const bad = join(dir, 'bad.toml');
    await writeFile(bad, `[plugins.probe]\ncommand = "x"\nisolation = "sometimes"\n`);
    const h2 = new PluginHost({ stateDir: dir, runtimeDir: dir, configFile: bad, logger: memoryLogger().logger });
    await expect(h2.catalog.resolve('probe')).rejects.toThrow(/plugins\.probe\.isolation/);
  });

  it('finds hvplug-plugin-<name> executables in a plugin directory', async () => {
    const dir = await tempDir();
    const exe = join(dir, 'hvplug-plugin-found');
    await writeFile(exe, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(fixture('probe'))}\n`);
    await chmod(exe, 0o755);
    const h = new PluginHost({ stateDir: dir, runtimeDir: dir, pluginDirs: [dir], logger: memoryLogger().logger });
    hosts.push(h);
    expect((await h.catalog.list()).map((s) => s.name)).toContain('found');
    const hv = await h.hypervisor('found');
    expect(hv.info.plugin.name).toBe('probe');
  });
});
