import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HvplugError, PluginHost } from 'hvplug';
import { CLI, ensureCliBuilt, eventually, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

/**
 * The host's Prometheus metrics, scraped over real HTTP (node's fetch) after a workload on the example plugin: each
 * figure is checked against what the test did.
 */
const PLUGIN = 'example-proprietary';
const hosts: PluginHost[] = [];
const closers: (() => Promise<void>)[] = [];

beforeAll(ensureCliBuilt, 120_000);

afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  await removeTempDirs();
});

async function newHost(supervision: ConstructorParameters<typeof PluginHost>[0] = {}): Promise<PluginHost> {
  const dir = await tempDir('hvplug-metrics-');
  const host = new PluginHost({
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logger: memoryLogger().logger,
    plugins: [{ name: PLUGIN, command: pluginExecutable(PLUGIN) }],
    ...supervision,
  });
  hosts.push(host);
  return host;
}

/** One scrape, parsed: `name{labels}` → value, labels in the order the exposition gives them. */
async function scrape(url: string): Promise<{ text: string; value: (name: string, labels?: Record<string, string>) => number | undefined }> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  const value = (name: string, labels: Record<string, string> = {}): number | undefined => {
    const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    return hits.length === 0 ? undefined : hits.reduce((a, s) => a + s.value, 0);
  };
  return { text, value };
}

describe('host metrics over HTTP', () => {
  it('counts calls by method and outcome, their latency, a restart after SIGKILL and VMs by status', async () => {
    // No health pings: a ping missed on a loaded machine would add a restart the test did not cause.
    const host = await newHost({ supervision: { healthIntervalMs: 0, backoffMs: 20 } });
    const server = await host.serveMetrics({ host: '127.0.0.1', port: 0 });
    closers.push(() => server.close());
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);

    const hv = await host.hypervisor(PLUGIN);
    const a = await hv.createVm({ config: {} });
    const b = await hv.createVm({ config: {} });
    const c = await hv.createVm({ config: {} });
    await a.start();
    await b.start();
    await b.pause();
    for (let i = 0; i < 5; i++) await a.info();
    // c was never started: pausing it fails, typed.
    const failure = await c.pause().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(HvplugError);
    const failedAs = (failure as HvplugError).code;
    expect(failedAs).toBe('InvalidState');

    const before = await scrape(server.url);
    const calls = (method: string, outcome = 'ok'): number | undefined => before.value('hvplug_calls_total', { plugin: PLUGIN, method, outcome });
    expect(calls('vm/create')).toBe(3);
    expect(calls('vm/start')).toBe(2);
    expect(calls('vm/pause')).toBe(1);
    expect(calls('vm/info')).toBe(5);
    expect(calls('vm/pause', failedAs), `vm/pause failing with ${failedAs}\n${before.text}`).toBe(1);
    // The latency histogram saw every call, each within the +Inf bucket and none below zero.
    expect(before.value('hvplug_call_duration_seconds_count', { plugin: PLUGIN, method: 'vm/info' })).toBe(5);
    expect(before.value('hvplug_call_duration_seconds_bucket', { plugin: PLUGIN, method: 'vm/info', le: '+Inf' })).toBe(5);
    expect(before.value('hvplug_call_duration_seconds_count', { plugin: PLUGIN, method: 'vm/pause' })).toBe(2);
    expect(before.value('hvplug_call_duration_seconds_sum', { plugin: PLUGIN, method: 'vm/create' })).toBeGreaterThan(0);
    expect(before.value('hvplug_vms', { plugin: PLUGIN, status: 'running' })).toBe(1);
    expect(before.value('hvplug_vms', { plugin: PLUGIN, status: 'paused' })).toBe(1);
    expect(before.value('hvplug_vms', { plugin: PLUGIN, status: 'created' })).toBe(1);
    // Declared before anything happens, so that a dashboard finds every name.
    expect(before.text).toContain('# TYPE hvplug_plugin_restarts_total counter');
    expect(before.text).toContain('# TYPE hvplug_migrations_total counter');
    expect(before.text).toContain('# TYPE hvplug_migration_downtime_seconds histogram');
    expect(before.value('hvplug_plugin_restarts_total', { plugin: PLUGIN })).toBeUndefined();

    // The plugin process is SIGKILLed: the supervisor restarts it and re-attaches the three VMs (vm/recover each).
    const pid = (await host.client(PLUGIN))?.pid;
    expect(pid).toBeGreaterThan(0);
    const restarted = new Promise<void>((resolve) => host.once('plugin-restarted', () => resolve()));
    process.kill(pid as number, 'SIGKILL');
    await restarted;
    await a.info();
    await a.stop();

    const after = await scrape(server.url);
    expect(after.value('hvplug_plugin_restarts_total', { plugin: PLUGIN })).toBe(1);
    expect(after.value('hvplug_calls_total', { plugin: PLUGIN, method: 'vm/recover', outcome: 'ok' })).toBe(3);
    expect(after.value('hvplug_calls_total', { plugin: PLUGIN, method: 'vm/info', outcome: 'ok' })).toBe(6);
    expect(after.value('hvplug_calls_total', { plugin: PLUGIN, method: 'vm/stop', outcome: 'ok' })).toBe(1);
    expect(after.value('hvplug_vms', { plugin: PLUGIN, status: 'running' })).toBeUndefined();
    expect(after.value('hvplug_vms', { plugin: PLUGIN, status: 'stopped' })).toBe(1);
    expect(after.value('hvplug_vms', { plugin: PLUGIN, status: 'paused' })).toBe(1);
    expect(after.value('hvplug_plugin_health_misses_total', { plugin: PLUGIN })).toBeUndefined();

    // Migration code reports through the host's tallies; the registry shows it.
    host.tallies.migration(PLUGIN, 'ok', 0.042);
    host.tallies.migration(PLUGIN, 'Timeout');
    const migrated = await scrape(server.url);
    expect(migrated.value('hvplug_migrations_total', { plugin: PLUGIN, outcome: 'ok' })).toBe(1);
    expect(migrated.value('hvplug_migrations_total', { plugin: PLUGIN, outcome: 'Timeout' })).toBe(1);
    expect(migrated.value('hvplug_migration_downtime_seconds_count', { plugin: PLUGIN })).toBe(1);
    expect(migrated.value('hvplug_migration_downtime_seconds_bucket', { plugin: PLUGIN, le: '0.025' })).toBe(0);
    expect(migrated.value('hvplug_migration_downtime_seconds_bucket', { plugin: PLUGIN, le: '0.05' })).toBe(1);

    for (const vm of [a, b, c]) await vm.delete();
    expect((await scrape(server.url)).value('hvplug_vms', { plugin: PLUGIN })).toBeUndefined();
    expect((await fetch(server.url.replace('/metrics', '/other'))).status).toBe(404);
  }, 60_000);

  it('counts a plugin that stops answering health pings as a health miss and a restart', async () => {
    const host = await newHost({ supervision: { healthIntervalMs: 100, healthTimeoutMs: 500, backoffMs: 20 } });
    const server = await host.serveMetrics({ port: 0 });
    closers.push(() => server.close());
    await host.hypervisor(PLUGIN);
    const pid = (await host.client(PLUGIN))?.pid as number;
    const restarted = new Promise<void>((resolve) => host.once('plugin-restarted', () => resolve()));
    process.kill(pid, 'SIGSTOP');
    await restarted;
    await eventually(async () => ((await scrape(server.url)).value('hvplug_plugin_restarts_total', { plugin: PLUGIN }) ?? 0) >= 1, 10_000, 'a restart counted');
    const s = await scrape(server.url);
    // At least the miss the test caused; a loaded machine may add one of its own.
    expect(s.value('hvplug_plugin_health_misses_total', { plugin: PLUGIN })).toBeGreaterThanOrEqual(1);
    expect(s.value('hvplug_plugin_restarts_total', { plugin: PLUGIN })).toBeGreaterThanOrEqual(1);
  }, 30_000);
});

describe('hvplug daemon --metrics', () => {
  it('serves the daemon host\'s metrics, counting the calls the CLI made through it', async () => {
    const state = await tempDir('hvplug-metrics-state-');
    const run = await tempDir('hvplug-metrics-run-');
    const cli = (args: readonly string[]) =>
      execa('node', [CLI, '--state-dir', state, '--runtime-dir', run, ...args], { reject: false, timeout: 60_000, env: { HVPLUG_CONFIG: '' } });
    const daemon = execa('node', [CLI, '--state-dir', state, '--runtime-dir', run, 'daemon', '--metrics', '127.0.0.1:0'], {
      reject: false,
      env: { HVPLUG_CONFIG: '' },
    });
    closers.push(async () => {
      daemon.kill('SIGTERM');
      await daemon;
    });
    let out = '';
    daemon.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await eventually(() => out.includes('ready') || daemon.exitCode !== null, 30_000, 'the daemon to be ready');
    const url = /metrics at (\S+)/.exec(out)?.[1];
    expect(url, out).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);

    const id = (await cli(['run', '--detach', '--plugin', PLUGIN])).stdout.trim();
    expect(id).not.toBe('');
    expect((await cli(['pause', id])).exitCode).toBe(0);
    expect((await cli(['pause', id])).exitCode).not.toBe(0);
    const s = await scrape(url as string);
    expect(s.value('hvplug_calls_total', { plugin: PLUGIN, method: 'vm/create', outcome: 'ok' }), s.text).toBe(1);
    expect(s.value('hvplug_calls_total', { plugin: PLUGIN, method: 'vm/start', outcome: 'ok' })).toBe(1);
    expect(s.value('hvplug_calls_total', { plugin: PLUGIN, method: 'vm/pause', outcome: 'ok' })).toBe(1);
    expect(s.value('hvplug_calls_total', { plugin: PLUGIN, method: 'vm/pause', outcome: 'InvalidState' }), s.text).toBe(1);
    expect(s.value('hvplug_vms', { plugin: PLUGIN, status: 'paused' })).toBe(1);
    expect((await cli(['rm', '--force', id])).exitCode).toBe(0);
  }, 90_000);

  it('refuses an address that is not host:port before starting', async () => {
    const r = await execa('node', [CLI, '--state-dir', await tempDir(), '--runtime-dir', await tempDir(), 'daemon', '--metrics', '9464'], {
      reject: false,
      timeout: 30_000,
      env: { HVPLUG_CONFIG: '' },
    });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/host:port/);
  }, 40_000);
});
