import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidParamsError, PluginHost, type PluginSpecInput, type ShimHypervisor } from 'hvplug';
import { fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

const hosts: PluginHost[] = [];

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  await removeTempDirs();
});

async function echoHost(spec: Partial<PluginSpecInput> = {}, configFile?: string): Promise<{ host: PluginHost; hv: ShimHypervisor }> {
  const dir = await tempDir();
  const host = new PluginHost({
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    plugins: configFile ? [] : [{ name: 'echo', command: fixture('config-echo'), ...spec }],
    configFile,
    logger: memoryLogger().logger,
  });
  hosts.push(host);
  return { host, hv: await host.hypervisor('echo') };
}

async function sent(hv: ShimHypervisor): Promise<{ method: string; vmId: string; config: Record<string, unknown> }[]> {
  return (await hv.extension('x-config-echo/received')) as { method: string; vmId: string; config: Record<string, unknown> }[];
}

const defaults = {
  machine: 'q35',
  memory: { sizeMiB: 512 },
  annotations: { team: 'infra', tier: 'gold' },
  plugin: { accel: 'tcg', extra: { a: 1 } },
};

describe('PluginSpec.defaults', () => {
  it('are merged under the vm/create config: sent and recorded merged, the caller wins', async () => {
    const { host, hv } = await echoHost({ defaults });
    const vm = await hv.createVm({ vmId: 'one', config: { vcpus: { boot: 2 } } });
    const [got] = await sent(hv);
    expect(got!.config).toMatchObject({ machine: 'q35', memory: { sizeMiB: 512 }, vcpus: { boot: 2 }, annotations: defaults.annotations, plugin: defaults.plugin });
    expect(vm.config).toEqual(got!.config);
    const { records } = await host.records();
    expect(records[0]!.config).toEqual(got!.config);
  });

  it('the caller’s top-level keys replace the defaults’ whole (memory, machine); annotations and plugin merge key by key, one level deep', async () => {
    const { hv } = await echoHost({ defaults });
    await hv.createVm({
      vmId: 'two',
      config: { machine: 'pc', memory: { sizeMiB: 1024 }, annotations: { tier: 'silver' }, plugin: { extra: { b: 2 } } },
    });
    const [got] = await sent(hv);
    expect(got!.config.machine).toBe('pc');
    expect(got!.config.memory).toEqual({ sizeMiB: 1024, hugepages: false, prealloc: false });
    expect(got!.config.annotations).toEqual({ team: 'infra', tier: 'silver' });
    // One level: the caller's `extra` replaces the default's, it is not merged into it.
    expect(got!.config.plugin).toEqual({ accel: 'tcg', extra: { b: 2 } });
  });

  it('are merged under the vm/restore config too', async () => {
    const { hv } = await echoHost({ defaults });
    await hv.restoreVm({ vmId: 'three', config: { annotations: { x: 'y' } }, path: '/snapshots/three' });
    const [got] = await sent(hv);
    expect(got!.method).toBe('vm/restore');
    expect(got!.config).toMatchObject({ machine: 'q35', annotations: { team: 'infra', tier: 'gold', x: 'y' } });
  });

  it('are merged before validation: the schema’s own defaults do not shadow the spec’s, and the merged config is checked', async () => {
    // Validated first, the caller's {} would already say console 'log' and devices [] and win over the spec.
    const { hv } = await echoHost({ defaults: { console: 'none', devices: [{ type: 'rng', id: 'rng0' }] } });
    await hv.createVm({ config: {} });
    expect((await sent(hv))[0]!.config).toMatchObject({ console: 'none', devices: [{ type: 'rng', id: 'rng0' }] });
    const err = await hv.createVm({ config: { vcpus: { boot: 0 } } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidParamsError);
    expect(await sent(hv)).toHaveLength(1);
  });

  it('come from a [plugins.<name>.defaults] table of the config file, as README shows', async () => {
    const dir = await tempDir();
    const file = join(dir, 'hvplug.toml');
    await writeFile(file, `[plugins.echo]\ncommand = ${JSON.stringify(fixture('config-echo'))}\n[plugins.echo.defaults]\nmachine = "q35"\n`);
    const { hv } = await echoHost({}, file);
    await hv.createVm({ config: {} });
    expect((await sent(hv))[0]!.config.machine).toBe('q35');
  });
});
