import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CancellationTokenSource, createMessageConnection, ResponseError, type MessageConnection } from 'vscode-jsonrpc/node';
import {
  DEVICE_TYPES,
  ErrorCode,
  GATED_METHODS,
  PROTOCOL_VERSIONS,
  VmEvent,
  type DeviceInput,
  type DeviceType,
  type ErrorCodeName,
  type InitializeResult,
  type MethodName,
  type ParamsInputOf,
  type ResultOf,
} from 'hvplug/protocol';
import { proc } from 'hvplug/plugin-sdk';
import { FramedReader, FramedWriter } from 'hvplug/transport';
import { bundle, root } from '../../../../scripts/bundle.mjs';

/**
 * The example plugin, bundled as it ships, spoken to over its stdio with a bare vscode-jsonrpc
 * connection and the protocol's framing: no host code in the loop. Every pid it reports is checked in
 * /proc, and every process a test starts is gone when the test ends.
 */

const GUEST_TITLE = 'hvplug-example-guest';
/** Every VM id of this run starts so, which lets the last test find any guest left over in /proc. */
const RUN = `t${process.pid}`;
let seq = 0;
const newVmId = (): string => `${RUN}-${++seq}`;

let work: string;
let pluginFile: string;
const plugins = new Set<Plugin>();
const guestPids = new Set<number>();

// ---- /proc ----

const procStat = proc.readStat;
const alive = proc.isAlive;
const cmdline = (pid: number): string => proc.cmdline(pid)?.join(' ') ?? '';

/** Processes of this run still in /proc: guests by their title, plugins by their bundle path. */
function leftovers(): number[] {
  return proc.pids().filter((pid) => alive(pid) && (cmdline(pid).includes(`${GUEST_TITLE} ${RUN}-`) || cmdline(pid).includes(pluginFile)));
}

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- the console ----

async function consoleLines(path: string): Promise<string[]> {
  return (await readFile(path, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

function ticks(lines: string[]): number[] {
  return lines.flatMap((l) => {
    const m = /^tick (\d+)$/.exec(l);
    return m ? [Number(m[1])] : [];
  });
}

// ---- the plugin over raw JSON-RPC ----

type Progress = { token: string | number; value: { message?: string; percentage?: number } };

class Plugin {
  readonly events: VmEvent[] = [];
  readonly progress: Progress[] = [];
  readonly stderr: string[] = [];
  /** The last opaque state the plugin gave for each VM, from results and state events. */
  readonly states = new Map<string, unknown>();
  private readonly exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly conn: MessageConnection,
  ) {
    this.exited = new Promise((r) => child.once('exit', () => r()));
    child.stderr?.on('data', (d: Buffer) => this.stderr.push(d.toString()));
    conn.onNotification((method: string, params: unknown) => {
      if (method !== 'vm/event') return;
      const event = VmEvent.parse(params);
      this.events.push(event);
      if (event.type === 'state') this.states.set(event.vmId, event.state);
    });
    conn.onUnhandledProgress((p) => this.progress.push(p as Progress));
    conn.listen();
  }

  get pid(): number {
    return this.child.pid as number;
  }

  static async start(runtimeDir = join(work, 'run')): Promise<{ plugin: Plugin; init: InitializeResult }> {
    const child = spawn(process.execPath, [pluginFile], { stdio: ['pipe', 'pipe', 'pipe'] });
    const conn = createMessageConnection(new FramedReader(child.stdout!), new FramedWriter(child.stdin!));
    const plugin = new Plugin(child, conn);
    plugins.add(plugin);
    const init = await conn.sendRequest<InitializeResult>('initialize', {
      protocolVersions: [...PROTOCOL_VERSIONS],
      host: { name: 'example-plugin.test', version: '0' },
      stateDir: join(work, 'state'),
      runtimeDir,
      logLevel: 'warn',
    });
    await conn.sendNotification('initialized', {});
    return { plugin, init };
  }

  async call<M extends MethodName>(method: M, params: ParamsInputOf<M>, token?: CancellationTokenSource): Promise<ResultOf<M>> {
    const result = token
      ? await this.conn.sendRequest<ResultOf<M>>(method, params, token.token)
      : await this.conn.sendRequest<ResultOf<M>>(method, params);
    const vmId = (params as { vmId?: string }).vmId;
    const state = (result as { state?: unknown } | undefined)?.state;
    if (vmId && state !== undefined) this.states.set(vmId, state);
    const pid = (result as { pid?: number } | undefined)?.pid;
    if (method === 'vm/info' && pid) guestPids.add(pid);
    return result;
  }

  eventsOf(vmId: string): VmEvent[] {
    return this.events.filter((e) => e.vmId === vmId);
  }

  typesOf(vmId: string): string[] {
    return this.eventsOf(vmId).map((e) => e.type);
  }

  async guestPid(vmId: string): Promise<number> {
    const { pid } = await this.call('vm/info', { vmId });
    expect(pid).toBeTypeOf('number');
    return pid as number;
  }

  /** The host going away: stdin ends, the plugin exits by itself. */
  async close(): Promise<void> {
    this.conn.dispose();
    this.child.stdin?.end();
    await this.exited;
    plugins.delete(this);
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
    this.conn.dispose();
    plugins.delete(this);
  }
}

async function rejection(p: Promise<unknown>, code: ErrorCodeName): Promise<ResponseError<Record<string, unknown>>> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(ResponseError);
  const re = err as ResponseError<Record<string, unknown>>;
  expect({ code: re.code, message: re.message, data: re.data }).toMatchObject({ code: ErrorCode[code] });
  return re;
}

// ---- fixtures for devices ----

const servers: Server[] = [];

async function listeningSocket(path: string): Promise<string> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return path;
}

async function rawImage(path: string, bytes = 1 << 20): Promise<string> {
  await writeFile(path, Buffer.alloc(bytes));
  return path;
}

/** One valid device of each type, its host resources real. */
async function deviceOf(type: DeviceType, id: string, dir: string): Promise<DeviceInput> {
  switch (type) {
    case 'block':
      return { type, id, path: await rawImage(join(dir, `${id}.img`)) };
    case 'net':
      return { type, id, backend: 'user', mac: '52:54:00:12:34:56', mtu: 1500 };
    case 'vsock':
      return { type, id, guestCid: 3 + seq };
    case 'virtio-fs': {
      await mkdir(join(dir, `${id}-shared`));
      return { type, id, tag: id, socketPath: await listeningSocket(join(dir, `${id}.sock`)), sharedDir: join(dir, `${id}-shared`) };
    }
    case 'vfio':
      await mkdir(join(dir, `${id}-pci`));
      return { type, id, hostPath: join(dir, `${id}-pci`) };
    case 'vhost-user':
      return { type, id, kind: 'net', socketPath: await listeningSocket(join(dir, `${id}.sock`)) };
    case 'serial':
      return { type, id, mode: 'file', path: join(dir, `${id}.log`) };
    case 'rng':
      return { type, id };
    case 'memory':
      return { type, id, sizeMiB: 128 };
    case 'cpu':
      return { type, id };
  }
}

// ---- setup and cleanup ----

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'hvplug-example-'));
  // Our own copy of the bundle: other test files run the shipped one meanwhile.
  pluginFile = join(work, 'hvplug-plugin-example-proprietary.mjs');
  await bundle(join(root, 'plugins/example-proprietary/src/main.ts'), pluginFile);
}, 60_000);

afterEach(async () => {
  // A failed test must not leave its processes to the next one; a passing one has none left.
  for (const p of [...plugins]) await p.kill();
  for (const pid of leftovers()) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      process.kill(pid, 'SIGKILL');
    }
  }
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** The end of every test: nothing it started still runs. */
async function expectNoLeftovers(): Promise<void> {
  await eventually(() => leftovers().length === 0, `no leftover processes (${leftovers().join(', ')})`);
}

// ---- the tests ----

describe('example-proprietary plugin, over raw JSON-RPC', () => {
  it('initializes with every gated method, every device type cold/hot/unplug, its config schema and its extension', async () => {
    const { plugin, init } = await Plugin.start();
    expect(init.plugin.name).toBe('example-proprietary');
    expect(init.protocolVersion).toBe(PROTOCOL_VERSIONS[0]);
    expect([...init.capabilities.methods].sort()).toEqual([...GATED_METHODS].sort());
    for (const type of DEVICE_TYPES) expect(init.capabilities.devices[type], type).toEqual({ coldplug: true, hotplug: true, hotunplug: true });
    expect(init.capabilities.consoleKinds).toEqual(['log']);
    expect(init.capabilities.machines).toEqual({ standard: { hotplug: true }, micro: { hotplug: false } });
    expect(init.configSchema).toMatchObject({ type: 'object', properties: { tickMs: { type: 'integer' } } });
    expect(Object.keys(init.capabilities.extensions)).toEqual(['x-example/echo']);

    const echo = await plugin.conn.sendRequest<{ message: string; pid: number }>('x-example/echo', { message: 'hello' });
    expect(echo).toMatchObject({ message: 'hello', pid: plugin.pid });
    const bad = await rejection(plugin.conn.sendRequest('x-example/echo', { text: 'hello' }), 'InvalidParams');
    expect(bad.data?.issues).toEqual(expect.arrayContaining([{ path: ['message'], message: 'is required' }]));
    // zod's own English words from the plugin's bundle: zod/mini registers no locale, hvplug/protocol does (else "Invalid input").
    const long = await rejection(plugin.conn.sendRequest('x-example/echo', { message: 'x'.repeat(4097) }), 'InvalidParams');
    expect(long.data?.issues).toEqual([{ path: ['message'], message: 'Too big: expected string to have <=4096 characters' }]);

    const plain = await plugin.call('config/validate', { config: { vcpus: { boot: 2 } } });
    expect(plain.config.vcpus.max).toBe(2);
    expect(plain.config.plugin).toEqual({ tickMs: 100, powerOffAfterTicks: 0, agentPort: 1024 });
    expect(plain.warnings.join('\n')).toMatch(/vcpus\.max is not set/);
    const full = await plugin.call('config/validate', { config: { vcpus: { boot: 1, max: 4 }, memory: { sizeMiB: 128, maxMiB: 512 } } });
    expect(full.warnings).toEqual([]);
    const invalid = await rejection(plugin.call('config/validate', { config: { plugin: { tickMs: 'fast', color: 'red' } } }), 'InvalidConfig');
    expect(invalid.data?.issues).toEqual([
      { path: ['plugin', 'tickMs'], message: 'must be integer, got string' },
      { path: ['plugin', 'color'], message: 'is not a known setting' },
    ]);
    await plugin.close();
    await expectNoLeftovers();
  });

  it('makes its runtime directory at initialize, private, when the host has not', async () => {
    const runtimeDir = join(work, 'fresh-run', 'example-proprietary');
    const { plugin } = await Plugin.start(runtimeDir);
    expect((await stat(runtimeDir)).mode & 0o777).toBe(0o700);
    await plugin.close();
    await expectNoLeftovers();
  });

  it('runs a VM through create, start, pause, resume, stop and delete as a real process', async () => {
    const { plugin } = await Plugin.start();
    const vmId = newVmId();
    const created = await plugin.call('vm/create', { vmId, config: { vcpus: { boot: 2, max: 4 }, memory: { sizeMiB: 256, maxMiB: 512 }, plugin: { tickMs: 20 } } });
    expect(created.status).toBe('created');
    const info0 = await plugin.call('vm/info', { vmId });
    expect(info0).toMatchObject({ status: 'created', vcpus: 2, memoryMiB: 256 });
    expect(info0.pid).toBeUndefined();
    expect((await plugin.call('vm/pids', { vmId })).pids).toEqual([]);
    const { path: consolePath } = await plugin.call('vm/console', { vmId });
    expect(existsSync(consolePath)).toBe(true);

    const started = await plugin.call('vm/start', { vmId, progressToken: 'boot-1' });
    expect(started.status).toBe('running');
    const boot = plugin.progress.filter((p) => p.token === 'boot-1');
    expect(boot.length).toBeGreaterThan(0);
    expect(boot.at(-1)?.value.percentage).toBe(100);

    const pid = await plugin.guestPid(vmId);
    expect(alive(pid)).toBe(true);
    expect(cmdline(pid)).toContain(`${GUEST_TITLE} ${vmId}`);
    // Detached: its own process group, so signals to the plugin's group never reach it.
    expect(procStat(pid)).toMatchObject({ ppid: plugin.pid, pgrp: pid });
    expect((await plugin.call('vm/pids', { vmId })).pids).toEqual([pid]);
    await eventually(async () => ticks(await consoleLines(consolePath)).length >= 3, 'the guest to tick');

    const threads = (await plugin.call('vm/threads', { vmId })).vcpus;
    expect(threads.map((t) => t.cpu)).toEqual([0, 1]);
    for (const { tid } of threads) expect(existsSync(`/proc/${pid}/task/${tid}`), `thread ${tid}`).toBe(true);
    expect((await plugin.call('vm/resizeVcpus', { vmId, count: 4 })).vcpus).toBe(4);
    expect((await plugin.call('vm/threads', { vmId })).vcpus).toHaveLength(4);
    expect((await plugin.call('vm/resizeMemory', { vmId, sizeMiB: 512 })).memoryMiB).toBe(512);
    expect(await plugin.call('vm/info', { vmId })).toMatchObject({ vcpus: 4, memoryMiB: 512 });
    const stats = await plugin.call('vm/stats', { vmId });
    expect(stats.memoryRssBytes).toBeGreaterThan(1 << 20);
    expect(stats.counters.threads).toBeGreaterThanOrEqual(4);
    expect(await plugin.call('vm/check', { vmId })).toMatchObject({ ok: true });

    const agent = await plugin.call('vm/agentSocket', { vmId });
    expect(agent.kind).toBe('unix');
    const answer = await new Promise<string>((resolve, reject) => {
      const s = createConnection(agent.path as string);
      let data = '';
      s.on('data', (d) => (data += d.toString()));
      s.on('end', () => resolve(data));
      s.on('error', reject);
    });
    expect(answer).toMatch(new RegExp(`^hvplug-example-agent ${vmId} next=\\d+`));

    // Disconnected, the plugin no longer watches the guest, which runs on; the next control call takes it back.
    await plugin.call('vm/disconnect', { vmId });
    expect((await plugin.call('vm/info', { vmId })).details).toMatchObject({ watched: false });
    expect(alive(pid)).toBe(true);

    expect((await plugin.call('vm/pause', { vmId })).status).toBe('paused');
    expect((await plugin.call('vm/info', { vmId })).details).toMatchObject({ watched: true });
    expect(procStat(pid)?.state).toBe('T');
    const frozen = ticks(await consoleLines(consolePath)).length;
    await sleep(150);
    expect(ticks(await consoleLines(consolePath)).length).toBe(frozen);
    expect(await plugin.call('vm/check', { vmId })).toMatchObject({ ok: true });

    expect((await plugin.call('vm/resume', { vmId })).status).toBe('running');
    expect(procStat(pid)?.state).not.toBe('T');
    await eventually(async () => ticks(await consoleLines(consolePath)).length > frozen, 'the guest to tick again');

    const stopped = await plugin.call('vm/stop', { vmId, graceMs: 2_000 });
    expect(stopped.status).toBe('stopped');
    expect(alive(pid)).toBe(false);
    expect((await consoleLines(consolePath)).at(-1)).toMatch(/^power-off code=0 next=\d+ on SIGTERM$/);
    expect(plugin.typesOf(vmId)).toEqual(['created', 'running', 'state', 'state', 'paused', 'resumed', 'exited', 'stopped']);
    expect(plugin.eventsOf(vmId).find((e) => e.type === 'exited')).toMatchObject({ code: 0, signal: null });
    expect(plugin.eventsOf(vmId).map((e) => e.seq)).toEqual(plugin.eventsOf(vmId).map((_, i) => i));

    // Idempotent: stopping a stopped VM succeeds and changes nothing.
    const before = plugin.events.length;
    expect((await plugin.call('vm/stop', { vmId })).status).toBe('stopped');
    expect(plugin.events.length).toBe(before);
    expect(await plugin.call('vm/wait', { vmId })).toMatchObject({ status: 'stopped', exitCode: 0 });

    // A stopped VM boots again, as a new process.
    await plugin.call('vm/start', { vmId });
    const second = await plugin.guestPid(vmId);
    expect(second).not.toBe(pid);
    expect(alive(second)).toBe(true);

    await plugin.call('vm/delete', { vmId });
    expect(alive(second)).toBe(false);
    expect(existsSync(consolePath)).toBe(false);
    await plugin.call('vm/delete', { vmId });
    await rejection(plugin.call('vm/info', { vmId }), 'VmNotFound');
    await plugin.close();
    await expectNoLeftovers();
  });

  it('reports a guest killed from outside with real exited events, and ends vm/wait', async () => {
    const { plugin } = await Plugin.start();
    const killed = newVmId();
    const terminated = newVmId();
    const finished = newVmId();
    for (const vmId of [killed, terminated]) {
      await plugin.call('vm/create', { vmId, config: {} });
      await plugin.call('vm/start', { vmId });
    }
    await plugin.call('vm/create', { vmId: finished, config: { plugin: { tickMs: 10, powerOffAfterTicks: 3 } } });

    // SIGKILL by someone else: a crash.
    const pid = await plugin.guestPid(killed);
    const waiting = plugin.call('vm/wait', { vmId: killed });
    await sleep(50);
    process.kill(pid, 'SIGKILL');
    expect(await waiting).toMatchObject({ status: 'crashed', exitCode: null });
    expect(plugin.eventsOf(killed).find((e) => e.type === 'exited')).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(plugin.typesOf(killed).slice(-3)).toEqual(['exited', 'crashed', 'state']);
    expect(plugin.states.get(killed)).toMatchObject({ status: 'crashed', guest: null });
    expect(await plugin.call('vm/info', { vmId: killed })).toMatchObject({ status: 'crashed' });
    expect(await plugin.call('vm/check', { vmId: killed })).toMatchObject({ ok: false });

    // SIGTERM by someone else: the guest powers off cleanly; stopped, not crashed.
    const tpid = await plugin.guestPid(terminated);
    process.kill(tpid, 'SIGTERM');
    expect(await plugin.call('vm/wait', { vmId: terminated })).toMatchObject({ status: 'stopped', exitCode: 0 });
    expect(plugin.typesOf(terminated)).toEqual(['created', 'running', 'exited', 'state']);

    // The guest ending by itself.
    await plugin.call('vm/start', { vmId: finished });
    expect(await plugin.call('vm/wait', { vmId: finished })).toMatchObject({ status: 'stopped', exitCode: 0, reason: 'the guest powered off' });

    // vm/wait is cancellable: $/cancelRequest reaches the handler, which answers Cancelled at once.
    await plugin.call('vm/start', { vmId: terminated });
    const cts = new CancellationTokenSource();
    const pending = plugin.call('vm/wait', { vmId: terminated }, cts);
    await sleep(100);
    const t0 = Date.now();
    cts.cancel();
    await rejection(pending, 'Cancelled');
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(await plugin.call('vm/info', { vmId: terminated })).toMatchObject({ status: 'running' });

    for (const vmId of [killed, terminated, finished]) await plugin.call('vm/delete', { vmId });
    await plugin.close();
    await expectNoLeftovers();
  });

  it('pauses and resumes a dozen VMs at once without a listener warning on its stderr', async () => {
    const { plugin } = await Plugin.start();
    // More than node's default of 10 listeners for one event: each pause waits for the kernel's SIGCHLD.
    const vmIds = Array.from({ length: 12 }, newVmId);
    await Promise.all(vmIds.map((vmId) => plugin.call('vm/create', { vmId, config: { plugin: { tickMs: 20 } } })));
    await Promise.all(vmIds.map((vmId) => plugin.call('vm/start', { vmId })));
    const paused = await Promise.all(vmIds.map((vmId) => plugin.call('vm/pause', { vmId })));
    expect(paused.map((r) => r.status)).toEqual(vmIds.map(() => 'paused'));
    for (const vmId of vmIds) expect(procStat(await plugin.guestPid(vmId))?.state).toBe('T');
    const resumed = await Promise.all(vmIds.map((vmId) => plugin.call('vm/resume', { vmId })));
    expect(resumed.map((r) => r.status)).toEqual(vmIds.map(() => 'running'));
    await Promise.all(vmIds.map((vmId) => plugin.call('vm/stop', { vmId, graceMs: 2_000 })));
    expect(plugin.stderr.join('')).not.toMatch(/Warning/);
    await plugin.close();
    await expectNoLeftovers();
  }, 60_000);

  it('saves a paused VM and restores it paused, its guest counter carrying on from the saved value', async () => {
    const { plugin } = await Plugin.start();
    const source = newVmId();
    const copy = newVmId();
    const snap = join(work, `${source}.snap`);
    await plugin.call('vm/create', { vmId: source, config: { vcpus: { boot: 1, max: 4 }, plugin: { tickMs: 20 } } });
    await plugin.call('vm/start', { vmId: source });
    await plugin.call('device/add', { vmId: source, device: { type: 'rng', id: 'rng0' } });
    await plugin.call('vm/resizeVcpus', { vmId: source, count: 3 });
    const { path: sourceConsole } = await plugin.call('vm/console', { vmId: source });
    await eventually(async () => ticks(await consoleLines(sourceConsole)).length >= 5, 'five ticks');

    const running = await rejection(plugin.call('vm/save', { vmId: source, path: snap }), 'InvalidState');
    expect(running.data).toEqual({ vmId: source, current: 'running', required: ['paused'] });

    await plugin.call('vm/pause', { vmId: source });
    const last = ticks(await consoleLines(sourceConsole)).at(-1) as number;
    const saved = await plugin.call('vm/save', { vmId: source, path: snap, progressToken: 'save-1' });
    expect(saved.path).toBe(snap);
    expect((await stat(snap)).size).toBe(saved.sizeBytes);
    expect(JSON.parse(await readFile(snap, 'utf8'))).toMatchObject({
      format: 'hvplug-example/snapshot',
      vmId: source,
      nextTick: last + 1,
      vcpus: 3,
      config: { devices: [{ type: 'rng', id: 'rng0' }] },
    });
    expect(plugin.progress.filter((p) => p.token === 'save-1').at(-1)?.value.percentage).toBe(100);
    // Saving leaves the VM as it was.
    expect(await plugin.call('vm/info', { vmId: source })).toMatchObject({ status: 'paused' });

    const restored = await plugin.call('vm/restore', { vmId: copy, config: { vcpus: { boot: 1, max: 4 }, plugin: { tickMs: 20 } }, path: snap, progressToken: 'restore-1' });
    expect(restored.status).toBe('paused');
    expect(plugin.typesOf(copy)).toEqual(['created', 'paused']);
    expect(plugin.progress.filter((p) => p.token === 'restore-1').at(-1)?.value.percentage).toBe(100);
    const info = await plugin.call('vm/info', { vmId: copy });
    expect(info).toMatchObject({ status: 'paused', vcpus: 3, devices: [{ id: 'rng0', type: 'rng' }] });
    const pid = info.pid as number;
    expect(procStat(pid)?.state).toBe('T');
    const { path: copyConsole } = await plugin.call('vm/console', { vmId: copy });
    expect(await consoleLines(copyConsole)).toEqual([`boot ${copy} next=${last + 1} tickMs=20`]);

    await plugin.call('vm/resume', { vmId: copy });
    await eventually(async () => ticks(await consoleLines(copyConsole)).length >= 3, 'the restored guest to tick');
    expect(ticks(await consoleLines(copyConsole)).slice(0, 3)).toEqual([last + 1, last + 2, last + 3]);

    await rejection(plugin.call('vm/restore', { vmId: copy, config: {}, path: snap }), 'AlreadyExists');
    await rejection(plugin.call('vm/restore', { vmId: newVmId(), config: {}, path: join(work, 'missing.snap') }), 'InvalidParams');

    for (const vmId of [source, copy]) await plugin.call('vm/delete', { vmId });
    expect(alive(pid)).toBe(false);
    await plugin.close();
    await expectNoLeftovers();
  });

  it('recovers running and paused VMs in a fresh plugin process after the first was SIGKILLed', async () => {
    const first = (await Plugin.start()).plugin;
    const running = newVmId();
    const paused = newVmId();
    const doomed = newVmId();
    const created = newVmId();
    const stale = newVmId();
    for (const vmId of [running, paused, doomed, stale]) {
      await first.call('vm/create', { vmId, config: { vcpus: { boot: 2, max: 2 }, plugin: { tickMs: 20 } } });
    }
    // A host that died before storing vm/start's answer holds the state vm/create gave.
    const staleState = first.states.get(stale);
    expect(staleState).toMatchObject({ status: 'created', guest: null });
    for (const vmId of [running, paused, doomed, stale]) await first.call('vm/start', { vmId });
    await first.call('device/add', { vmId: running, device: { type: 'memory', id: 'mem1', sizeMiB: 64 } });
    await first.call('vm/pause', { vmId: paused });
    await first.call('vm/create', { vmId: created, config: {} });
    const pids = new Map<string, number>();
    for (const vmId of [running, paused, doomed, stale]) pids.set(vmId, await first.guestPid(vmId));
    const states = new Map(first.states);
    states.set(stale, staleState);
    const configs = new Map(
      await Promise.all([running, paused, doomed, created, stale].map(async (vmId) => [vmId, (await first.call('vm/config', { vmId })).config] as const)),
    );

    await first.kill();
    for (const [vmId, pid] of pids) expect(alive(pid), `${vmId}'s guest outlives its plugin`).toBe(true);
    // One guest dies while no plugin watches it.
    process.kill(pids.get(doomed) as number, 'SIGKILL');
    await eventually(() => !alive(pids.get(doomed) as number), 'the doomed guest to die');

    const second = (await Plugin.start()).plugin;
    const recover = (vmId: string): Promise<ResultOf<'vm/recover'>> =>
      second.call('vm/recover', { vmId, config: configs.get(vmId) as ParamsInputOf<'vm/recover'>['config'], state: states.get(vmId) as ParamsInputOf<'vm/recover'>['state'] });
    expect((await recover(running)).status).toBe('running');
    expect((await recover(paused)).status).toBe('paused');
    expect((await recover(doomed)).status).toBe('lost');
    expect((await recover(created)).status).toBe('created');
    // The stale state names no guest; the VM's runtime directory does.
    expect((await recover(stale)).status).toBe('running');
    expect(await second.call('vm/info', { vmId: stale })).toMatchObject({ pid: pids.get(stale) });
    expect(await second.call('vm/info', { vmId: running })).toMatchObject({ pid: pids.get(running), vcpus: 2, devices: [{ id: 'mem1', type: 'memory' }] });
    expect(await second.call('vm/info', { vmId: paused })).toMatchObject({ pid: pids.get(paused), status: 'paused' });
    expect((await second.call('vm/threads', { vmId: running })).vcpus).toHaveLength(2);
    // Recovering a VM the process already has is a no-op; a state that is not ours is refused.
    expect((await recover(running)).status).toBe('running');
    await rejection(second.call('vm/recover', { vmId: newVmId(), config: {}, state: { format: 'something-else' } }), 'InvalidParams');

    // The re-attached guests are controlled as before.
    expect((await second.call('vm/resume', { vmId: paused })).status).toBe('running');
    expect(procStat(pids.get(paused) as number)?.state).not.toBe('T');
    const stopped = await second.call('vm/stop', { vmId: paused, graceMs: 2_000 });
    expect(stopped.status).toBe('stopped');
    expect(alive(pids.get(paused) as number)).toBe(false);
    expect(second.typesOf(paused)).toEqual(['resumed', 'exited', 'stopped']);

    // A re-attached guest is not our child: its death is seen by watching /proc.
    const waiting = second.call('vm/wait', { vmId: running });
    process.kill(pids.get(running) as number, 'SIGKILL');
    expect(await waiting).toMatchObject({ status: 'crashed' });
    expect(second.typesOf(running)).toEqual(['exited', 'crashed', 'state']);
    expect(second.eventsOf(running)[0]).toMatchObject({ code: null, signal: null });

    for (const vmId of [running, paused, doomed, created, stale]) await second.call('vm/delete', { vmId });
    expect(alive(pids.get(stale) as number)).toBe(false);
    await second.close();
    await expectNoLeftovers();
  });

  it('answers every misuse with its typed protocol error', async () => {
    const { plugin } = await Plugin.start();
    const vmId = newVmId();
    const dir = await mkdtemp(join(work, 'errors-'));

    const notFound = await rejection(plugin.call('vm/info', { vmId: 'no-such-vm' }), 'VmNotFound');
    expect(notFound.data).toEqual({ vmId: 'no-such-vm' });
    await rejection(plugin.call('vm/start', { vmId: 'no-such-vm' }), 'VmNotFound');
    await plugin.call('vm/delete', { vmId: 'no-such-vm' });

    await plugin.call('vm/create', { vmId, config: { vcpus: { boot: 1, max: 2 }, memory: { sizeMiB: 128, maxMiB: 256 } } });
    await rejection(plugin.call('vm/create', { vmId, config: {} }), 'AlreadyExists');
    const notRunning = await rejection(plugin.call('vm/pause', { vmId }), 'InvalidState');
    expect(notRunning.data).toEqual({ vmId, current: 'created', required: ['running'] });
    await rejection(plugin.call('vm/resume', { vmId }), 'InvalidState');
    await rejection(plugin.call('vm/save', { vmId, path: join(dir, 'x.snap') }), 'InvalidState');
    await rejection(plugin.call('vm/stop', { vmId }), 'InvalidState');
    await rejection(plugin.call('vm/stats', { vmId }), 'InvalidState');

    // Bad devices: refused by the table's schema, or by the plugin where the schema cannot tell.
    const floppy = await rejection(plugin.conn.sendRequest('device/add', { vmId, device: { type: 'floppy', id: 'fd0' } }), 'InvalidParams');
    expect(floppy.data?.method).toBe('device/add');
    await rejection(plugin.call('device/add', { vmId, device: { type: 'block', id: 'disk0', path: 'relative.img' } }), 'InvalidParams');
    const tap = await rejection(plugin.call('device/add', { vmId, device: { type: 'net', id: 'net0', backend: 'tap' } }), 'InvalidParams');
    expect(tap.data?.issues).toEqual([{ path: ['device', 'tapName'], message: 'a tap backend needs tapName' }]);
    const missing = await rejection(plugin.call('device/add', { vmId, device: { type: 'block', id: 'disk0', path: join(dir, 'absent.img') } }), 'VmmFailure');
    expect(missing.data).toMatchObject({ vmmCode: 'ENOENT' });
    await plugin.call('device/add', { vmId, device: { type: 'block', id: 'disk0', path: await rawImage(join(dir, 'disk0.img')) } });
    await rejection(plugin.call('device/add', { vmId, device: { type: 'rng', id: 'disk0' } }), 'AlreadyExists');
    await rejection(plugin.call('device/remove', { vmId, deviceId: 'nope' }), 'InvalidParams');

    await rejection(plugin.call('vm/resizeVcpus', { vmId, count: 3 }), 'InvalidParams');
    await rejection(plugin.call('vm/resizeMemory', { vmId, sizeMiB: 512 }), 'InvalidParams');
    await rejection(plugin.call('vm/create', { vmId: newVmId(), config: { plugin: { tickMs: 1 } } }), 'InvalidConfig');
    await rejection(plugin.call('vm/create', { vmId: newVmId(), config: { machine: 'pc-i440fx' } }), 'InvalidConfig');
    await rejection(plugin.conn.sendRequest('vm/create', { vmId: newVmId(), config: { vcpus: { boot: 0 } } }), 'InvalidParams');

    // The micro machine has no hotplug, whatever the device.
    const micro = newVmId();
    await plugin.call('vm/create', { vmId: micro, config: { machine: 'micro' } });
    await plugin.call('device/add', { vmId: micro, device: { type: 'rng', id: 'rng0' } });
    await plugin.call('vm/start', { vmId: micro });
    await rejection(plugin.call('device/add', { vmId: micro, device: { type: 'rng', id: 'rng1' } }), 'NotSupported');
    await rejection(plugin.call('device/remove', { vmId: micro, deviceId: 'rng0' }), 'NotSupported');
    await rejection(plugin.call('vm/start', { vmId: micro }), 'InvalidState');

    // An image under a running guest is not deleted.
    await plugin.call('vm/start', { vmId });
    await rejection(plugin.call('image/delete', { path: join(dir, 'disk0.img') }), 'InvalidState');

    for (const id of [vmId, micro]) await plugin.call('vm/delete', { vmId: id });
    await rejection(plugin.call('vm/pause', { vmId }), 'VmNotFound');
    await plugin.close();
    await expectNoLeftovers();
  });

  it('cold-plugs, hot-plugs and hot-unplugs a device of every type', async () => {
    const { plugin } = await Plugin.start();
    const dir = await mkdtemp(join(work, 'devices-'));
    const vmId = newVmId();
    const cold = await Promise.all(DEVICE_TYPES.map((t) => deviceOf(t, `c-${t}`, dir)));
    await plugin.call('vm/create', { vmId, config: { devices: cold } });
    const listed = async (): Promise<string[]> => (await plugin.call('vm/info', { vmId })).devices.map((d) => d.id).sort();
    expect(await listed()).toEqual(cold.map((d) => d.id).sort());
    expect((await plugin.call('vm/start', { vmId })).status).toBe('running');
    expect(await plugin.call('vm/agentSocket', { vmId })).toEqual({ kind: 'vsock', cid: (cold.find((d) => d.type === 'vsock') as { guestCid: number }).guestCid, port: 1024 });

    const hot = await Promise.all(DEVICE_TYPES.map((t) => deviceOf(t, `h-${t}`, dir)));
    for (const device of hot) expect((await plugin.call('device/add', { vmId, device })).deviceId).toBe(device.id);
    expect(await listed()).toEqual([...cold, ...hot].map((d) => d.id).sort());
    expect((await plugin.call('vm/config', { vmId })).config.devices.map((d) => d.id)).toEqual([...cold, ...hot].map((d) => d.id));
    for (const device of [...cold, ...hot]) await plugin.call('device/remove', { vmId, deviceId: device.id });
    expect(await listed()).toEqual([]);
    expect(await plugin.call('vm/info', { vmId })).toMatchObject({ status: 'running' });
    const deviceEvents = plugin.eventsOf(vmId).filter((e) => e.type === 'device-added' || e.type === 'device-removed');
    expect(deviceEvents.map((e) => `${e.type} ${'deviceId' in e ? e.deviceId : ''}`)).toEqual([
      ...hot.map((d) => `device-added ${d.id}`),
      ...[...cold, ...hot].map((d) => `device-removed ${d.id}`),
    ]);

    await plugin.call('vm/delete', { vmId });
    await plugin.close();
    await expectNoLeftovers();
  });

  it('makes real images: raw and qcow2 backing images, qcow2 overlays, cloud-init seeds', async () => {
    const { plugin } = await Plugin.start();
    const dir = await mkdtemp(join(work, 'images-'));
    const base = join(dir, 'base.raw');
    expect(await plugin.call('image/ensure', { path: base, sizeBytes: 1 << 20 })).toEqual({ path: base, format: 'raw', sizeBytes: 1 << 20, created: true });
    expect((await stat(base)).size).toBe(1 << 20);
    expect((await plugin.call('image/ensure', { path: base, sizeBytes: 1 << 20 })).created).toBe(false);
    await rejection(plugin.call('image/ensure', { path: join(dir, 'sizeless.raw') }), 'InvalidParams');

    const qcow = join(dir, 'base.qcow2');
    expect(await plugin.call('image/ensure', { path: qcow, format: 'qcow2', sizeBytes: 1 << 30 })).toMatchObject({ format: 'qcow2', sizeBytes: 1 << 30, created: true });
    expect(await plugin.call('image/ensure', { path: qcow, format: 'qcow2' })).toMatchObject({ format: 'qcow2', sizeBytes: 1 << 30, created: false });

    const overlay = join(dir, 'overlay.qcow2');
    const seedPath = join(dir, 'seed');
    const made = await plugin.call('image/create', {
      path: overlay,
      backingFile: base,
      cloudInit: { seedPath, userData: '#cloud-config\nhostname: vm1\n', metaData: 'instance-id: i-1\n', networkConfig: 'version: 2\n' },
    });
    expect(made).toEqual({ path: overlay, seedPath });
    expect(await readFile(join(seedPath, 'user-data'), 'utf8')).toBe('#cloud-config\nhostname: vm1\n');
    expect(await readFile(join(seedPath, 'meta-data'), 'utf8')).toBe('instance-id: i-1\n');
    expect(readdirSync(seedPath).sort()).toEqual(['meta-data', 'network-config', 'user-data']);
    await rejection(plugin.call('image/create', { path: overlay, sizeBytes: 1 << 20 }), 'AlreadyExists');

    const raw = join(dir, 'copy.raw');
    await plugin.call('image/create', { path: raw, format: 'raw', backingFile: base, sizeBytes: 2 << 20 });
    expect((await stat(raw)).size).toBe(2 << 20);

    // qemu-img, where installed, reads these as the images they claim to be.
    const qemuImg = spawnSync('qemu-img', ['--version']);
    if (qemuImg.status === 0) {
      for (const path of [qcow, overlay]) expect(spawnSync('qemu-img', ['check', path]).status, `qemu-img check ${path}`).toBe(0);
      const info = JSON.parse(spawnSync('qemu-img', ['info', '--output=json', overlay]).stdout.toString()) as Record<string, unknown>;
      expect(info).toMatchObject({ format: 'qcow2', 'virtual-size': 1 << 20, 'backing-filename': base, 'backing-filename-format': 'raw' });
    }

    for (const path of [overlay, seedPath, raw, qcow, base]) {
      await plugin.call('image/delete', { path });
      expect(existsSync(path), path).toBe(false);
      await plugin.call('image/delete', { path });
    }
    await plugin.close();
    await expectNoLeftovers();
  });

  it('leaves no process of this run behind', async () => {
    expect(plugins.size).toBe(0);
    for (const pid of guestPids) expect(alive(pid), `guest ${pid}`).toBe(false);
    expect(leftovers()).toEqual([]);
  });
});
