import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CancelledError, PluginHost, ResourceExhaustedError, TimeoutError } from 'hvplug';
import { fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

const hosts: PluginHost[] = [];

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  await removeTempDirs();
});

describe('the host reads the data of Timeout, Cancelled and ResourceExhausted answers', () => {
  it('into the typed errors', async () => {
    const dir = await tempDir();
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      plugins: [{ name: 'error-data', command: fixture('error-data') }],
      logger: memoryLogger().logger,
    });
    hosts.push(host);
    const hv = await host.hypervisor('error-data');
    const vm = await hv.createVm({ config: {} });

    const timeout = await vm.start().catch((e: unknown) => e);
    expect(timeout).toBeInstanceOf(TimeoutError);
    expect(timeout).toMatchObject({ method: 'vm/start', timeoutMs: 1234 });
    expect((timeout as Error).message).toMatch(/vm\/start.*1234 ms.*the VMM did not answer/);

    const exhausted = await vm.pause().catch((e: unknown) => e);
    expect(exhausted).toBeInstanceOf(ResourceExhaustedError);
    expect(exhausted).toMatchObject({ method: 'vm/pause', reason: 'all 4 pause slots are taken' });

    const cancelled = await vm.resume().catch((e: unknown) => e);
    expect(cancelled).toBeInstanceOf(CancelledError);
    expect(cancelled).toMatchObject({ method: 'vm/resume' });
    expect((cancelled as Error).message).toMatch(/given up/);
  });
});
