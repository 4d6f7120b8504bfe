import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStateStore, PluginHost } from 'hvplug';
import { root } from '../../scripts/bundle.mjs';
import { ensureCliBuilt, eventually, fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

/**
 * The host writes a VM's record before it sends vm/create, so that a VM never exists without one. A host SIGKILLed
 * while vm/create runs leaves a record whose create never answered: the next host must resolve it (recovered if
 * the plugin finds the VM, else cleaned up by the plugin and dropped), never keep it as a lost VM for good.
 */
const CORE = new URL('../../dist/src/core/index.js', import.meta.url).href;
const STEP = join(root, 'test/fixtures/hosts/step.mjs');
const PLUGIN = { name: 'slow-create', command: fixture('slow-create') };

beforeAll(ensureCliBuilt, 120_000);
afterAll(removeTempDirs);

describe('a host SIGKILLed while vm/create runs', () => {
  it('leaves a record the next host resolves: the plugin cannot find the VM, so it is cleaned up and dropped', async () => {
    const dir = await tempDir('hvplug-pending-create-');
    const stateDir = join(dir, 'state');
    const runtimeDir = join(dir, 'run');
    const vmId = 'half-made';
    const child = execa('node', [STEP, JSON.stringify({ core: CORE, stateDir, runtimeDir, plugin: PLUGIN, vmId, op: 'create', params: { config: {} } })], {
      reject: false,
    });
    // The record is written before vm/create is sent; the plugin then takes 60 s to answer.
    await eventually(() => existsSync(join(stateDir, 'vms', `${vmId}.json`)), 20_000, 'the record of the VM being created');
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGKILL');
    await child;
    const before = (await new FileStateStore(stateDir).list()).records;
    expect(before.map((r) => r.vmId)).toEqual([vmId]);

    const host = new PluginHost({ stateDir, runtimeDir, logger: memoryLogger().logger, plugins: [PLUGIN], supervision: { healthIntervalMs: 0 } });
    try {
      const report = await host.reattach();
      expect(report.lost).toEqual([]);
      expect(report.recovered).toEqual([]);
      expect(report.abandoned).toEqual([{ vmId, reason: expect.any(String) }]);
      expect((await host.records()).records).toEqual([]);
      expect(await host.vm(vmId)).toBeUndefined();
      // The id is free again.
      const hv = await host.hypervisor('slow-create');
      const vm = await hv.createVm({ vmId, config: { plugin: { createMs: 0 } } });
      expect(vm.status).toBe('created');
      expect((await host.records()).records.map((r) => [r.vmId, r.status])).toEqual([[vmId, 'created']]);
    } finally {
      await host.close();
    }
  }, 60_000);
});
