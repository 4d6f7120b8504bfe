import { writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CancelledError,
  IntegrityError,
  InvalidParamsError,
  NotSupportedError,
  PluginClient,
  PluginExitedError,
  PluginHost,
  PluginSpec,
  ProtocolError,
  ProtocolVersionError,
  ProtocolViolationError,
  TimeoutError,
  type ShimHypervisor,
} from 'hvplug';
import { alive, eventually, fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

const hosts: PluginHost[] = [];

async function probeHost(opts: Partial<ConstructorParameters<typeof PluginHost>[0]> = {}): Promise<{ host: PluginHost; hv: ShimHypervisor }> {
  const dir = await tempDir();
  const host = new PluginHost({
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    plugins: [{ name: 'probe', command: fixture('probe') }, { name: 'probe2', command: fixture('probe') }],
    logger: memoryLogger().logger,
    ...opts,
  });
  hosts.push(host);
  return { host, hv: await host.hypervisor('probe') };
}

async function received(hv: ShimHypervisor): Promise<string[]> {
  return (await hv.extension('x-probe/received')) as string[];
}

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  await removeTempDirs();
});

describe('shim → plugin calls', () => {
  it('refuses an unadvertised method locally, sending nothing', async () => {
    const { hv } = await probeHost();
    const vm = await hv.createVm({ config: {} });
    await expect(vm.pause()).rejects.toBeInstanceOf(NotSupportedError);
    await expect(vm.pause()).rejects.toMatchObject({ local: true, method: 'vm/pause' });
    expect(await received(hv)).toEqual(['vm/create']);
  });

  it('refuses an unsupported device type locally, from the capabilities', async () => {
    const { hv } = await probeHost();
    await expect(
      hv.createVm({ config: { devices: [{ type: 'vsock', id: 'v0', guestCid: 3 }] } }),
    ).rejects.toThrow(/cannot attach vsock devices/);
    expect(await received(hv)).toEqual([]);
  });

  it('rejects invalid params before sending, naming the field', async () => {
    const { hv } = await probeHost();
    const err = await hv.createVm({ config: { vcpus: { boot: 0 } } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidParamsError);
    expect((err as InvalidParamsError).issues[0]?.path).toEqual(['config', 'vcpus', 'boot']);
    expect(await received(hv)).toEqual([]);
  });

  it('turns a malformed result into ProtocolViolation naming the method and field', async () => {
    const { hv } = await probeHost();
    const vm = await hv.createVm({ config: {} });
    const err = await vm.info().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolViolationError);
    expect((err as Error).message).toMatch(/vm\/info/);
    expect((err as ProtocolViolationError).issues.map((i) => i.path.join('.'))).toContain('vcpus');
  });

  it('on a deadline rejects with Timeout at once and the plugin sees $/cancelRequest', async () => {
    const { hv } = await probeHost();
    const vm = await hv.createVm({ config: {} });
    const t0 = Date.now();
    await expect(vm.wait(undefined, { timeoutMs: 200 })).rejects.toBeInstanceOf(TimeoutError);
    expect(Date.now() - t0).toBeLessThan(2_000);
    await eventually(async () => ((await hv.extension('x-probe/cancelled')) as string[]).includes(`vm/wait:${vm.id}`));
  });

  it('an AbortSignal cancels the call and reaches the handler', async () => {
    const { hv } = await probeHost();
    const vm = await hv.createVm({ config: {} });
    const ac = new AbortController();
    const pending = vm.wait(undefined, { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(pending).rejects.toBeInstanceOf(CancelledError);
    await eventually(async () => ((await hv.extension('x-probe/cancelled')) as string[]).includes(`vm/wait:${vm.id}`));
  });

  it('delivers events and progress in order', async () => {
    const { hv } = await probeHost();
    const vm = await hv.createVm({ config: {} });
    const events: string[] = [];
    vm.on('event', (e) => events.push(e.type));
    const progress: string[] = [];
    const r = await vm.start(undefined, { onProgress: (p) => progress.push(`${p.value.message}:${p.value.percentage}`) });
    expect(r.status).toBe('running');
    expect(vm.status).toBe('running');
    expect(progress).toEqual(['booting:50']);
    await eventually(() => events.includes('running'));
  });

  it('interceptors can rewrite params and veto calls', async () => {
    const { host, hv } = await probeHost();
    host.use({
      before: (call) => {
        if (call.method === 'vm/delete') throw new Error('deletes are frozen');
        if (call.method === 'vm/create') return { ...call.params, config: { ...(call.params.config as object), name: 'rewritten' } };
        return undefined;
      },
    });
    // Interceptors apply to plugins started after use(): start a second one.
    const hv2 = await host.hypervisor('probe2');
    const vm = await hv2.createVm({ config: {} });
    expect(vm.config.name).toBe('rewritten');
    await expect(vm.delete()).rejects.toThrow(/vetoed: deletes are frozen/);
    expect(await received(hv2)).toEqual(['vm/create']);
    expect(hv).toBeDefined();
  });
});

describe('plugin faults', () => {
  it('SIGKILL mid-call rejects at once with PluginExited carrying the stderr tail', async () => {
    const { host, hv } = await probeHost();
    const client = await host.client('probe');
    const pending = hv.extension('x-probe/stderr-then-hang', {}, { timeoutMs: null });
    await new Promise((r) => setTimeout(r, 200));
    process.kill(client!.pid, 'SIGKILL');
    const err = await pending.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginExitedError);
    expect((err as PluginExitedError).signal).toBe('SIGKILL');
    expect((err as PluginExitedError).stderrTail.join('\n')).toMatch(/about to hang forever/);
  });

  it('garbage on stdout is a ProtocolError naming the bytes; host and other plugins carry on', async () => {
    const { host, hv } = await probeHost();
    const other = await host.hypervisor('probe2');
    const err = await hv.extension('x-probe/garbage').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as Error).message).toContain('hello from a stray');
    const client = await host.client('probe');
    if (client) await eventually(() => !alive(client.pid), 5_000, 'broken plugin killed');
    expect(await other.extension('x-probe/echo', { still: 'here' })).toEqual({ still: 'here' });
  });

  it('console.log and process.stdout.write in a plugin go to its log, not the protocol stream', async () => {
    const mem = memoryLogger();
    const { hv } = await probeHost({ logger: mem.logger });
    expect(await hv.extension('x-probe/print')).toBe('ok');
    // stderr is a pipe of its own: its lines may arrive after the answer on stdout.
    await eventually(() => mem.lines().some((l) => l.msg === 'so does process.stdout.write'), 5_000, 'the plugin log lines');
    const text = mem.lines().map((l) => l.msg);
    expect(text).toContain('console.log goes to stderr');
    expect(text).toContain('so does process.stdout.write');
    expect(mem.lines().find((l) => l.msg === 'console.log goes to stderr')).toMatchObject({ plugin: 'probe' });
  });

  it('an over-size header from the plugin is refused before the body is buffered; the host lives on', async () => {
    const { host, hv } = await probeHost({ maxMessageBytes: 64 * 1024 });
    const other = await host.hypervisor('probe2');
    const err = await hv.extension('x-probe/huge-header').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as Error).message).toMatch(/message of 999999999 bytes exceeds the limit of 65536 bytes/);
    expect(await other.extension('x-probe/echo', { ok: 1 })).toEqual({ ok: 1 });
  });

  it('the plugin refuses to send an over-size result: a clear error, both sides alive', async () => {
    const { hv } = await probeHost({ maxMessageBytes: 64 * 1024 });
    const err = await hv.extension('x-probe/big', { bytes: 1024 * 1024 }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/exceeds the limit of 65536 bytes/);
    expect(await hv.extension('x-probe/echo', { ok: 2 })).toEqual({ ok: 2 });
  });

  it('an over-size message from the host is refused with a clear error and the plugin stays usable', async () => {
    const { hv } = await probeHost({ maxMessageBytes: 64 * 1024 });
    const err = await hv.extension('x-probe/echo', { blob: 'y'.repeat(200 * 1024) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as Error).message).toMatch(/exceeds the limit/);
    expect(await hv.extension('x-probe/echo', { small: true })).toEqual({ small: true });
  });
});

describe('spawn and handshake', () => {
  const baseOpts = async () => {
    const dir = await tempDir();
    return { stateDir: dir, runtimeDir: dir, logger: memoryLogger().logger, logLevel: 'info' as const, hostVersion: '0.0.0' };
  };

  it('no common protocol version is an error naming both lists', async () => {
    const spec = PluginSpec.parse({ name: 'probe', command: fixture('probe'), env: { PROBE_PROTOCOL_VERSIONS: '2.0.0,2.1.0' } });
    const err = await PluginClient.start(spec, { ...(await baseOpts()), protocolVersions: ['1.0.0'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolVersionError);
    expect((err as Error).message).toContain('[1.0.0]');
    expect((err as Error).message).toContain('[2.0.0, 2.1.0]');
  });

  it('a compatible minor version is accepted and the lower one chosen', async () => {
    const spec = PluginSpec.parse({ name: 'probe', command: fixture('probe'), env: { PROBE_PROTOCOL_VERSIONS: '1.0.0' } });
    const client = await PluginClient.start(spec, { ...(await baseOpts()), protocolVersions: ['1.3.0', '1.0.0'] });
    expect(client.info.protocolVersion).toBe('1.0.0');
    await client.close();
  });

  it('host variables outside the allow-list are invisible to the plugin; named ones pass', async () => {
    const env = { ...process.env, HVPLUG_TEST_SECRET: 'hunter2', HVPLUG_TEST_SHARED: 'yes' };
    const { hv } = await probeHost({
      env,
      plugins: [{ name: 'probe', command: fixture('probe'), envPassthrough: ['HVPLUG_TEST_SHARED'], env: { GIVEN: '1' } }],
    });
    const keys = (await hv.extension('x-probe/env')) as string[];
    expect(keys).not.toContain('HVPLUG_TEST_SECRET');
    expect(keys).toContain('HVPLUG_TEST_SHARED');
    expect(keys).toContain('GIVEN');
    expect(keys).toContain('PATH');
  });

  it('a wrong SHA-256 pin refuses the plugin before it runs', async () => {
    const dir = await tempDir();
    const marker = join(dir, 'ran');
    const script = join(dir, 'hvplug-plugin-evil');
    await writeFile(script, `#!/bin/sh\ntouch ${marker}\n`);
    await chmod(script, 0o755);
    const host = new PluginHost({
      stateDir: dir,
      runtimeDir: dir,
      logger: memoryLogger().logger,
      plugins: [{ name: 'evil', command: script, sha256: '0'.repeat(64) }],
    });
    hosts.push(host);
    const err = await host.hypervisor('evil').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/SHA-256 is [0-9a-f]{64}, the pin says 0{64}/);
    await new Promise((r) => setTimeout(r, 200));
    const { existsSync } = await import('node:fs');
    expect(existsSync(marker)).toBe(false);
  });

  it('a right SHA-256 pin runs the plugin', async () => {
    const { sha256File } = await import('../../src/core/integrity.js');
    const { hv } = await probeHost({
      plugins: [{ name: 'probe', command: fixture('probe'), sha256: await sha256File(fixture('probe')) }],
    });
    expect(hv.info.plugin.name).toBe('probe');
  });
});

describe('no orphans', () => {
  it('after host.close() no plugin process remains', async () => {
    const { host } = await probeHost();
    await host.hypervisor('probe2');
    const pids = [(await host.client('probe'))!.pid, (await host.client('probe2'))!.pid];
    expect(pids.every(alive)).toBe(true);
    await host.close();
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  it('after the host is SIGKILLed every plugin exits on its own (stdin EOF)', async () => {
    const dir = await tempDir();
    const script = join(dir, 'host.mjs');
    const coreUrl = new URL('../../dist/src/core/index.js', import.meta.url).href;
    await writeFile(
      script,
      `import { PluginHost } from ${JSON.stringify(coreUrl)};
const host = new PluginHost({ stateDir: ${JSON.stringify(dir)}, runtimeDir: ${JSON.stringify(dir)},
  plugins: [{ name: 'a', command: ${JSON.stringify(fixture('probe'))} }, { name: 'b', command: ${JSON.stringify(fixture('probe'))} }] });
await host.hypervisor('a'); await host.hypervisor('b');
console.log(JSON.stringify([(await host.client('a')).pid, (await host.client('b')).pid]));
setInterval(() => {}, 1000);
`,
    );
    const child = execa('node', [script], { stdout: 'pipe', stderr: 'ignore', reject: false });
    const pids = await new Promise<number[]>((resolve) => {
      child.stdout?.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as number[]));
    });
    expect(pids.every(alive)).toBe(true);
    child.kill('SIGKILL');
    await child;
    await eventually(() => pids.every((p) => !alive(p)), 5_000, 'plugins to exit after host death');
  });
});
