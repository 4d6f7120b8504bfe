import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStateStore, PluginHost, type ShimVm, type VmRecord } from 'hvplug';
import { root } from '../../../../scripts/bundle.mjs';
import { SKIP_MESSAGE, TEST_CACHE_DIR, findQemu } from '../../test-support/guest.js';
import { alive, ensureCliBuilt, memoryLogger, pluginExecutable, processesUnder, removeTempDirs, tempDir } from '../../../../test/helpers.js';

/**
 * Every mutating call on a real QEMU VM, each made by a host process that SIGKILLs itself the instant the call
 * resolves (test/fixtures/hosts/step.mjs); a new host then re-attaches from the same directories, and the record
 * and the re-attached VM (whose status the plugin reads from QEMU over QMP) must show what the call did. One guest
 * is carried through the chain, and its snapshot restored into a second VM.
 */
const qemu = findQemu();
if (!qemu) console.warn(`skipping QEMU durability tests: ${SKIP_MESSAGE}`);

const CORE = new URL('../../../../dist/src/core/index.js', import.meta.url).href;
const STEP = join(root, 'test/fixtures/hosts/step.mjs');
const PLUGIN = { name: 'qemu', command: pluginExecutable('qemu') };
const config = {
  vcpus: { boot: 1, max: 2 },
  memory: { sizeMiB: 256, maxMiB: 512, slots: 2 },
  plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR, guestScript: 'while true; do echo TICK; sleep 1; done' },
};

interface QemuState {
  pid: number | null;
  vcpus: number;
  memoryMiB: number;
  attached: { device: { id: string } }[];
}

describe.skipIf(!qemu)('QEMU: each mutating call is durable when it resolves (host SIGKILLed right after)', () => {
  let dir: string;
  let stateDir: string;
  let runtimeDir: string;
  const pids = new Set<number>();

  beforeAll(async () => {
    await ensureCliBuilt();
    dir = await tempDir('hvplug-qemu-durable-');
    stateDir = join(dir, 'state');
    runtimeDir = join(dir, 'run');
  }, 120_000);

  afterAll(async () => {
    for (const pid of processesUnder([runtimeDir])) process.kill(pid, 'SIGKILL');
    await removeTempDirs();
  });

  /** One call in a host process of its own, which is SIGKILLed the instant the call resolves. */
  async function step(vmId: string, op: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const child = await execa('node', [STEP, JSON.stringify({ core: CORE, stateDir, runtimeDir, plugin: PLUGIN, vmId, op, params })], { reject: false });
    expect(child.signal, child.stderr).toBe('SIGKILL');
    const out = JSON.parse(child.stdout) as { ok: boolean; result?: unknown; error?: string; report: { lost: unknown[] } };
    expect(out.error).toBeUndefined();
    expect(out.report.lost).toEqual([]);
    return out.result;
  }

  async function record(vmId: string): Promise<VmRecord & { state: QemuState }> {
    const r = (await new FileStateStore(stateDir).list()).records.find((x) => x.vmId === vmId);
    expect(r, `record of ${vmId}`).toBeDefined();
    return r as VmRecord & { state: QemuState };
  }

  /** A new host on the same directories, its VMs re-attached; `check` looks at one of them, then the host closes. */
  async function reattached(vmId: string, check: (vm: ShimVm) => Promise<void>): Promise<void> {
    const host = new PluginHost({ stateDir, runtimeDir, logger: memoryLogger().logger, plugins: [PLUGIN], supervision: { healthIntervalMs: 0 } });
    try {
      const report = await host.reattach();
      expect(report.lost).toEqual([]);
      expect(report.recovered).toContain(vmId);
      await check((await host.vm(vmId))!);
    } finally {
      await host.close();
    }
  }

  it('create, start, device add, pause, resume, resize, device remove, save, stop, restore, delete', async () => {
    const t0 = Date.now();
    const vmId = 'durable-1';
    await step(vmId, 'create', { config });
    expect((await record(vmId)).status).toBe('created');
    await reattached(vmId, async (vm) => expect(vm.status).toBe('created'));

    await step(vmId, 'start');
    const started = await record(vmId);
    expect(started.status).toBe('running');
    const pid = started.state.pid!;
    pids.add(pid);
    expect(alive(pid)).toBe(true);
    await reattached(vmId, async (vm) => {
      expect(vm.status).toBe('running');
      expect(await vm.info()).toMatchObject({ status: 'running', pid });
    });

    const image = join(dir, 'disk.raw');
    await execa('qemu-img', ['create', '-q', '-f', 'raw', image, '8M']);
    await step(vmId, 'device-add', { device: { type: 'block', id: 'disk1', path: image } });
    expect((await record(vmId)).config.devices.map((d) => d.id)).toEqual(['disk1']);
    await reattached(vmId, async (vm) => expect((await vm.info()).devices).toEqual([{ id: 'disk1', type: 'block' }]));

    await step(vmId, 'pause');
    expect((await record(vmId)).status).toBe('paused');
    // The plugin reads the status from QEMU (query-status) when it re-attaches.
    await reattached(vmId, async (vm) => expect((await vm.info()).status).toBe('paused'));

    await step(vmId, 'resume');
    expect((await record(vmId)).status).toBe('running');
    await reattached(vmId, async (vm) => expect((await vm.info()).status).toBe('running'));

    await step(vmId, 'resize-vcpus', { count: 2 });
    expect((await record(vmId)).state.vcpus).toBe(2);
    await reattached(vmId, async (vm) => expect((await vm.info()).vcpus).toBe(2));

    await step(vmId, 'resize-memory', { sizeMiB: 384 });
    expect((await record(vmId)).state.memoryMiB).toBe(384);
    await reattached(vmId, async (vm) => expect((await vm.info()).memoryMiB).toBe(384));

    // The guest acknowledges an unplug once it is up; QEMU asks again until it does.
    await step(vmId, 'device-remove', { deviceId: 'disk1' });
    expect((await record(vmId)).config.devices).toEqual([]);
    // The resizes' vCPU and DIMM stay; the disk is gone.
    await reattached(vmId, async (vm) => expect((await vm.info()).devices.map((d) => d.id)).not.toContain('disk1'));

    await step(vmId, 'pause');
    const snapshot = join(dir, 'snap.bin');
    const saved = (await step(vmId, 'save', { path: snapshot })) as { sizeBytes: number };
    expect(statSync(snapshot).size).toBe(saved.sizeBytes);
    // vm/save leaves the VM as it found it: paused, the same QEMU.
    expect(await record(vmId)).toMatchObject({ status: 'paused', state: { pid } });
    await reattached(vmId, async (vm) => expect(await vm.info()).toMatchObject({ status: 'paused', pid }));

    await step(vmId, 'stop', { graceMs: 0 });
    expect(await record(vmId)).toMatchObject({ status: 'stopped', state: { pid: null } });
    expect(alive(pid)).toBe(false);
    await reattached(vmId, async (vm) => expect(vm.status).toBe('stopped'));

    const restoredId = 'durable-2';
    await step(restoredId, 'restore', { config, path: snapshot });
    const restored = await record(restoredId);
    expect(restored).toMatchObject({ status: 'paused', state: { vcpus: 2, memoryMiB: 384 } });
    const restoredPid = restored.state.pid!;
    pids.add(restoredPid);
    expect(alive(restoredPid)).toBe(true);
    await reattached(restoredId, async (vm) => expect(await vm.info()).toMatchObject({ status: 'paused', pid: restoredPid }));

    // Deleted from a new host: no record, no QEMU.
    const host = new PluginHost({ stateDir, runtimeDir, logger: memoryLogger().logger, plugins: [PLUGIN], supervision: { healthIntervalMs: 0 } });
    try {
      await host.reattach();
      for (const id of [vmId, restoredId]) await (await host.vm(id))!.delete();
      expect((await host.records()).records).toEqual([]);
    } finally {
      await host.close();
    }
    for (const p of pids) expect(alive(p), `QEMU ${p}`).toBe(false);
    expect(processesUnder([runtimeDir])).toEqual([]);
    expect(existsSync(snapshot)).toBe(true);
    console.log(`QEMU durability chain: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }, 240_000);
});
