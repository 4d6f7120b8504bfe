import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { PluginHost, VmOwnedError } from 'hvplug';
import { alive, CLI, ensureCliBuilt, eventually, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

/** One live owner per VM: two hosts on one state directory, as `hvplug run` and `hvplug ps` in two terminals. */
const PLUGIN = 'example-proprietary';
const hosts: PluginHost[] = [];

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  await removeTempDirs();
});

function makeHost(stateDir: string, runtimeDir: string): PluginHost {
  const host = new PluginHost({
    stateDir,
    runtimeDir,
    logger: memoryLogger().logger,
    plugins: [{ name: PLUGIN, command: pluginExecutable(PLUGIN) }],
    supervision: { backoffMs: 20, healthIntervalMs: 0 },
  });
  hosts.push(host);
  return host;
}

describe('VM ownership between hosts', () => {
  it('a second host sees a VM another live host drives, never marks it lost, and its mutating calls name the owner', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const first = makeHost(stateDir, runtimeDir);
    const vm = await (await first.hypervisor(PLUGIN)).createVm({ config: {} });
    await vm.start();

    const second = makeHost(stateDir, runtimeDir);
    const lost: string[] = [];
    second.on('vm-lost', ({ vmId }) => lost.push(vmId));
    const report = await second.reattach();
    expect(report.recovered).toEqual([]);
    expect(report.lost).toEqual([]);
    expect(report.owned).toEqual([{ vmId: vm.id, owner: expect.stringContaining(`host process ${process.pid}`) }]);
    const seen = (await second.attach(vm.id))!;
    expect(seen.status).toBe('running');
    expect(seen.ownedBy).toMatch(/host process/);
    const err = await seen.stop().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmOwnedError);
    expect((err as Error).message).toContain(`host process ${process.pid}`);
    expect(lost).toEqual([]);
    expect((await second.records()).records[0]?.status).toBe('running');
    // hvplug ps in another terminal: the VM with its owner, as its record says.
    await ensureCliBuilt();
    const ps = await execa('node', [CLI, '--state-dir', stateDir, '--runtime-dir', runtimeDir, 'ps', '--json'], { reject: false });
    expect(JSON.parse(ps.stdout)).toEqual([expect.objectContaining({ id: vm.id, status: 'running', owner: expect.stringContaining(`host process ${process.pid}`) })]);
    // The owner is undisturbed.
    expect(await vm.check()).toMatchObject({ ok: true });

    // Once the owner lets go, the other host takes the VM over.
    await first.close();
    const third = makeHost(stateDir, runtimeDir);
    const taken = await third.reattach();
    expect(taken.recovered).toEqual([vm.id]);
    const mine = (await third.vm(vm.id))!;
    await mine.stop({ graceMs: 1_000 });
    await mine.delete();
  });

  it('a long-lived host that saw a VM owned elsewhere takes it over once the owner lets go (as the daemon must)', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const owner = makeHost(stateDir, runtimeDir);
    const vm = await (await owner.hypervisor(PLUGIN)).createVm({ config: {} });
    await vm.start();

    const daemon = makeHost(stateDir, runtimeDir);
    expect((await daemon.attach(vm.id))?.ownedBy).toMatch(/host process/);
    await owner.close();
    // The same host, asked again: the lease is free now, so the VM is its own, not still "driven by" the gone owner.
    const again = (await daemon.attach(vm.id))!;
    expect(again.ownedBy).toBeUndefined();
    await again.pause();
    expect(again.status).toBe('paused');
    await again.stop({ graceMs: 1_000 });
    await again.delete();
  });

  it('the lease of a SIGKILLed owner is taken over', async () => {
    const dir = await tempDir();
    const [stateDir, runtimeDir] = [join(dir, 'state'), join(dir, 'run')];
    const script = join(dir, 'host.mjs');
    const coreUrl = new URL('../../dist/src/core/index.js', import.meta.url).href;
    await writeFile(
      script,
      `import { PluginHost } from ${JSON.stringify(coreUrl)};
const host = new PluginHost({ stateDir: ${JSON.stringify(stateDir)}, runtimeDir: ${JSON.stringify(runtimeDir)}, logLevel: 'silent',
  plugins: [{ name: ${JSON.stringify(PLUGIN)}, command: ${JSON.stringify(pluginExecutable(PLUGIN))} }] });
const vm = await (await host.hypervisor(${JSON.stringify(PLUGIN)})).createVm({ config: {} });
await vm.start();
console.log(JSON.stringify({ vmId: vm.id, plugin: (await host.client(${JSON.stringify(PLUGIN)})).pid }));
setInterval(() => {}, 1000);
`,
    );
    const child = execa('node', [script], { stdout: 'pipe', stderr: 'ignore', reject: false });
    const out = await new Promise<{ vmId: string; plugin: number }>((resolve) => {
      child.stdout?.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as { vmId: string; plugin: number }));
    });
    // While it lives, it owns the VM.
    const watcher = makeHost(stateDir, runtimeDir);
    expect((await watcher.reattach()).owned.map((o) => o.vmId)).toEqual([out.vmId]);
    await watcher.close();
    child.kill('SIGKILL');
    await child;
    await eventually(() => !alive(out.plugin), 5_000, 'the old plugin to exit');
    const next = makeHost(stateDir, runtimeDir);
    expect((await next.reattach()).recovered).toEqual([out.vmId]);
    const vm = (await next.vm(out.vmId))!;
    await vm.stop({ graceMs: 1_000 });
    await vm.delete();
  });
});
