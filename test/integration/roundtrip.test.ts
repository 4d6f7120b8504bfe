import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METHOD_NAMES, PROTOCOL_VERSIONS, type MethodName } from 'hvplug/protocol';
import { PluginHost, type ShimHypervisor, type ShimVm } from 'hvplug';
import { alive, eventually, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

/**
 * Every method of the table, round-tripped shim → example plugin → shim. The case table is typed over
 * every method name, so adding a method to the protocol without a case here fails the typecheck, and the
 * last test fails the run if a case did not actually put its method on the wire.
 */
interface Ctx {
  host: PluginHost;
  hv: ShimHypervisor;
  vm: ShimVm;
  dir: string;
}

const cases = {
  initialize: async ({ hv }) => {
    expect(hv.info.plugin.name).toBe('example-proprietary');
    expect(hv.info.protocolVersion).toBe(PROTOCOL_VERSIONS[0]);
  },
  'health/ping': async ({ hv }) => {
    expect((await hv.invoke('health/ping', {})).uptimeMs).toBeGreaterThanOrEqual(0);
  },
  'rpc.discover': async ({ hv }) => {
    const doc = await hv.invoke('rpc.discover', {});
    expect(doc.openrpc).toBe('1.3.2');
  },
  'config/validate': async ({ hv }) => {
    const r = await hv.validateConfig({ config: { vcpus: { boot: 1 } } });
    expect(r.config.vcpus.boot).toBe(1);
    expect(Array.isArray(r.warnings)).toBe(true);
  },
  'vm/create': async ({ vm }) => {
    expect(vm.status).toBe('created');
  },
  'vm/start': async ({ vm }) => {
    expect((await vm.start()).status).toBe('running');
  },
  'vm/info': async ({ vm }) => {
    const info = await vm.info();
    expect(info.vmId).toBe(vm.id);
    expect(info.status).toBe('running');
    expect(alive(info.pid!)).toBe(true);
  },
  'vm/config': async ({ vm }) => {
    expect((await vm.getConfig()).config.memory.sizeMiB).toBe(vm.config.memory.sizeMiB);
  },
  'vm/check': async ({ vm }) => {
    expect((await vm.check()).ok).toBe(true);
  },
  'vm/pids': async ({ vm }) => {
    const { pids } = await vm.pids();
    expect(pids.length).toBeGreaterThan(0);
    expect(pids.every(alive)).toBe(true);
  },
  'vm/threads': async ({ vm }) => {
    const { vcpus } = await vm.threads();
    expect(vcpus.length).toBeGreaterThan(0);
    for (const t of vcpus) expect(existsSync(`/proc/${(await vm.pids()).pids[0]}/task/${t.tid}`)).toBe(true);
  },
  'vm/stats': async ({ vm }) => {
    const s = await vm.stats();
    expect(s.memoryRssBytes).toBeGreaterThan(0);
  },
  'vm/console': async ({ vm }) => {
    const c = await vm.console();
    expect(c.kind).toBe('log');
    await eventually(() => existsSync(c.path));
  },
  'vm/agentSocket': async ({ vm }) => {
    const a = await vm.agentSocket();
    expect(['vsock', 'unix']).toContain(a.kind);
  },
  'device/add': async ({ vm, dir }) => {
    const path = join(dir, 'disk.raw');
    await writeFile(path, Buffer.alloc(1024 * 1024));
    expect((await vm.addDevice({ device: { type: 'block', id: 'disk1', path } })).deviceId).toBe('disk1');
    expect((await vm.info()).devices.map((d) => d.id)).toContain('disk1');
  },
  'device/remove': async ({ vm }) => {
    await vm.removeDevice({ deviceId: 'disk1' });
    expect((await vm.info()).devices.map((d) => d.id)).not.toContain('disk1');
  },
  'vm/resizeVcpus': async ({ vm }) => {
    expect((await vm.resizeVcpus({ count: 2 })).vcpus).toBe(2);
  },
  'vm/resizeMemory': async ({ vm }) => {
    expect((await vm.resizeMemory({ sizeMiB: 512 })).memoryMiB).toBe(512);
  },
  'vm/pause': async ({ vm }) => {
    expect((await vm.pause()).status).toBe('paused');
  },
  'vm/save': async ({ vm, dir }) => {
    const r = await vm.save({ path: join(dir, 'snap') });
    expect(r.sizeBytes).toBeGreaterThan(0);
  },
  'vm/restore': async ({ hv, dir }) => {
    const restored = await hv.restoreVm({ config: { vcpus: { boot: 1, max: 4 }, memory: { sizeMiB: 256, maxMiB: 1024 } }, path: join(dir, 'snap') });
    expect(restored.status).toBe('paused');
    await restored.delete();
  },
  'vm/resume': async ({ vm }) => {
    expect((await vm.resume()).status).toBe('running');
  },
  'vm/disconnect': async ({ vm }) => {
    await vm.disconnect();
    expect(alive((await vm.info()).pid!)).toBe(true);
  },
  'vm/recover': async ({ hv, vm }) => {
    const again = await hv.recoverVm({ vmId: vm.id, config: vm.config, state: vm.state ?? null });
    expect(again.status).toBe('running');
  },
  'vm/stop': async ({ vm }) => {
    const pid = (await vm.info()).pid!;
    expect((await vm.stop({ graceMs: 2_000 })).status).toBe('stopped');
    await eventually(() => !alive(pid));
  },
  'vm/wait': async ({ vm }) => {
    expect((await vm.wait()).status).toBe('stopped');
  },
  'vm/delete': async ({ vm }) => {
    await vm.delete();
  },
  'vm/receiveMigration': async ({ hv }) => {
    const incoming = await hv.receiveMigration({ config: { vcpus: { boot: 1 } } });
    expect(incoming.status).toBe('created');
    await incoming.delete();
  },
  'vm/migrate': async ({ hv }) => {
    const source = await hv.createVm({ config: { vcpus: { boot: 1 } } });
    await source.start();
    const { vm: incoming, answer } = await hv.bringUpWith('vm/receiveMigration', { config: { vcpus: { boot: 1 } } });
    expect(answer.uri).toMatch(/^unix:\//);
    const r = await source.migrate({ uri: answer.uri });
    expect(r.transferredBytes).toBeGreaterThan(0);
    await eventually(async () => (await incoming.info()).status === 'running');
    expect(hv.vm(source.id)).toBeUndefined();
    await incoming.delete();
  },
  'image/ensure': async ({ hv, dir }) => {
    const r = await hv.ensureImage({ path: join(dir, 'base.raw'), sizeBytes: 1024 * 1024 });
    expect(r.created).toBe(true);
    expect((await hv.ensureImage({ path: join(dir, 'base.raw'), sizeBytes: 1024 * 1024 })).created).toBe(false);
  },
  'image/create': async ({ hv, dir }) => {
    const r = await hv.createImage({
      path: join(dir, 'overlay.qcow2'),
      backingFile: join(dir, 'base.raw'),
      cloudInit: { seedPath: join(dir, 'seed'), userData: '#cloud-config\n', metaData: 'instance-id: i-1\n' },
    });
    expect(existsSync(r.path)).toBe(true);
    expect(r.seedPath && existsSync(r.seedPath)).toBe(true);
  },
  'image/delete': async ({ hv, dir }) => {
    await hv.deleteImage({ path: join(dir, 'overlay.qcow2') });
    expect(existsSync(join(dir, 'overlay.qcow2'))).toBe(false);
  },
  shutdown: async ({ host }) => {
    const pid = (await host.client('example-proprietary'))!.pid;
    await host.close();
    expect(alive(pid)).toBe(false);
  },
} satisfies Record<MethodName, (ctx: Ctx) => Promise<void>>;

describe('every method round-trips through shim → example plugin → shim', () => {
  const seen = new Set<string>();
  let ctx: Ctx;

  beforeAll(async () => {
    const dir = await tempDir();
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      logger: memoryLogger().logger,
      plugins: [{ name: 'example-proprietary', command: pluginExecutable('example-proprietary') }],
      interceptors: [{ after: (call) => void seen.add(call.method) }],
    });
    const hv = await host.hypervisor('example-proprietary');
    const vm = await hv.createVm({ config: { vcpus: { boot: 1, max: 4 }, memory: { sizeMiB: 256, maxMiB: 1024 } } });
    ctx = { host, hv, vm, dir };
  });

  afterAll(async () => {
    await ctx?.host.close();
    await removeTempDirs();
  });

  for (const [method, run] of Object.entries(cases)) {
    it(method, () => run(ctx));
  }

  it('covers every method of the table, on the wire', () => {
    expect(Object.keys(cases).sort()).toEqual([...METHOD_NAMES].sort());
    // initialize and shutdown are spoken by the host itself, outside the interceptors.
    const handshake = ['initialize', 'shutdown'];
    expect(METHOD_NAMES.filter((m) => !handshake.includes(m) && !seen.has(m))).toEqual([]);
  });
});
