import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { proc } from 'hvplug/plugin-sdk';
import { root } from '../../scripts/bundle.mjs';
import { alive, ensureCliBuilt, eventually, onJsonLines, pluginExecutable, processesUnder, removeTempDirs, tempDir } from '../helpers.js';
import { makeCerts, type Certs } from '../remote-certs.js';

/**
 * A host and its plugin on two machines, as far as the network goes: two network namespaces joined by a veth
 * pair, a host process in one (test/fixtures/hosts/remote-host.mjs, started with `ip netns exec`) and the
 * example plugin listening on mutual TLS in the other, with certificates made here.
 */
const CORE = new URL('../../dist/src/core/index.js', import.meta.url).href;
const HOST_FIXTURE = join(root, 'test/fixtures/hosts/remote-host.mjs');
const PLUGIN = 'example-proprietary';
const HOST_IP = '10.231.0.1';
const PLUGIN_IP = '10.231.0.2';
const PORT = 7443;
const ADDRESS = `tls://${PLUGIN_IP}:${PORT}`;

const isRoot = process.getuid?.() === 0;
const haveIp = await execa('ip', ['-V'], { reject: false }).then(
  (r) => r.exitCode === 0,
  () => false,
);
const skip = !isRoot ? 'network namespaces need root (ip netns add)' : !haveIp ? 'the ip command (iproute2) is not installed' : undefined;

// Unique per run: other test runs on the machine make their own.
const tag = randomBytes(3).toString('hex');
const nsHost = `hvplug-h-${tag}`;
const nsPlugin = `hvplug-p-${tag}`;
const vethHost = `hvh${tag}`;
const vethPlugin = `hvp${tag}`;

const ip = (...args: string[]): Promise<unknown> => execa('ip', args);

interface Line {
  id?: number;
  ok?: boolean;
  result?: Record<string, unknown>;
  error?: { name: string; code?: string; message: string };
  event?: string;
  at?: number;
  ms?: number;
  [k: string]: unknown;
}

/** A host process in the host namespace, driven over its stdin/stdout (see the fixture). */
class RemoteHost {
  readonly child: ChildProcess;
  readonly events: Line[] = [];
  private readonly waiting = new Map<number, (l: Line) => void>();
  private nextId = 1;
  readonly ready: Promise<void>;
  private stderr = '';

  constructor(opts: Record<string, unknown>) {
    this.child = spawn('ip', ['netns', 'exec', nsHost, process.execPath, HOST_FIXTURE, JSON.stringify({ core: CORE, ...opts })], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    hostProcs.push(this.child);
    this.child.stderr?.on('data', (c: Buffer) => (this.stderr = (this.stderr + c.toString()).slice(-4000)));
    let ready: () => void = () => undefined;
    this.ready = new Promise((r) => (ready = r));
    onJsonLines<Line>(this.child.stdout!, (line) => {
      if (line.event === 'ready') ready();
      else if (line.event !== undefined) this.events.push(line);
      else if (line.id !== undefined) this.waiting.get(line.id)?.(line);
    });
  }

  /** Sends one command; resolves with its answer line (a failed op is an answer too). */
  async send(op: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<Line> {
    await this.ready;
    const id = this.nextId++;
    return new Promise<Line>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`host op ${op} got no answer within ${timeoutMs} ms; stderr: ${this.stderr}`)), timeoutMs);
      this.waiting.set(id, (l) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(l);
      });
      this.child.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`);
    });
  }

  async ok(op: string, args: Record<string, unknown> = {}, timeoutMs?: number): Promise<Record<string, unknown>> {
    const l = await this.send(op, args, timeoutMs);
    if (!l.ok) throw new Error(`host op ${op} failed: ${l.error?.name}: ${l.error?.message}`);
    return l.result ?? {};
  }

  eventsNamed(name: string): Line[] {
    return this.events.filter((e) => e.event === name);
  }
}

const hostProcs: ChildProcess[] = [];
let plugin: ChildProcess | undefined;
let pluginErr = '';
/** The plugin's notes on its hosts (connected, gone, taken as gone), in order; the first 1000. */
const hostNotes: string[] = [];
let certs: Certs;
let dir: string;
let nsMade = false;

function hostOpts(state: string, tlsFiles: { cert: string; key: string }, supervision: Record<string, unknown>): Record<string, unknown> {
  return {
    stateDir: join(dir, state, 'state'),
    runtimeDir: join(dir, state, 'run'),
    plugin: { name: PLUGIN, connect: ADDRESS, tls: { ...tlsFiles, ca: certs.ca }, startTimeoutMs: 3_000 },
    supervision,
  };
}

describe.skipIf(skip !== undefined)(`remote plugins across network namespaces${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(async () => {
    await ensureCliBuilt();
    dir = await tempDir('hvplug-netns-');
    certs = await makeCerts(join(dir), [PLUGIN_IP]);
    nsMade = true;
    await ip('netns', 'add', nsHost);
    await ip('netns', 'add', nsPlugin);
    await ip('link', 'add', vethHost, 'netns', nsHost, 'type', 'veth', 'peer', 'name', vethPlugin, 'netns', nsPlugin);
    await ip('-n', nsHost, 'addr', 'add', `${HOST_IP}/30`, 'dev', vethHost);
    await ip('-n', nsPlugin, 'addr', 'add', `${PLUGIN_IP}/30`, 'dev', vethPlugin);
    for (const [ns, dev] of [
      [nsHost, vethHost],
      [nsPlugin, vethPlugin],
    ] as const) {
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', ns, 'link', 'set', dev, 'up');
    }
    // The plugin takes a host connection that has said nothing for 3 s as gone; the hosts here ping every 0.5 s.
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        nsPlugin,
        pluginExecutable(PLUGIN),
        '--listen',
        ADDRESS,
        '--cert',
        certs.server.cert,
        '--key',
        certs.server.key,
        '--client-ca',
        certs.ca,
        '--state-dir',
        join(dir, 'plugin-state'),
        '--runtime-dir',
        join(dir, 'plugin-run'),
        '--host-silence-ms',
        '3000',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    plugin = child;
    child.stderr.on('data', (c: Buffer) => (pluginErr = (pluginErr + c.toString()).slice(-20_000)));
    createInterface({ input: child.stderr }).on('line', (line) => {
      const m = /(host connected|host gone|taken as gone)/.exec(line);
      if (m && hostNotes.length < 1_000) hostNotes.push(m[1] as string);
    });
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (line.startsWith('listening ')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`the plugin exited (${code}) before listening: ${pluginErr}`)));
    });
  }, 60_000);

  afterAll(async () => {
    for (const h of hostProcs) if (h.pid !== undefined && alive(h.pid)) h.kill('SIGKILL');
    if (plugin?.pid !== undefined && alive(plugin.pid)) plugin.kill('SIGKILL');
    await eventually(() => [...hostProcs, ...(plugin ? [plugin] : [])].every((p) => p.exitCode !== null || p.signalCode !== null), 10_000, 'hosts and plugin to exit').catch(
      () => undefined,
    );
    // The tests end their VMs; a guest still running here is a failure (and is ended).
    const left = (dir ? processesUnder([dir]) : []).map((pid) => ({ pid, cmdline: (proc.cmdline(pid) ?? []).join(' ') }));
    for (const { pid } of left) process.kill(pid, 'SIGKILL');
    if (nsMade) {
      await execa('ip', ['-n', nsHost, 'link', 'del', vethHost], { reject: false });
      await execa('ip', ['netns', 'del', nsHost], { reject: false });
      await execa('ip', ['netns', 'del', nsPlugin], { reject: false });
    }
    await removeTempDirs();
    const namespaces = (await execa('ip', ['netns', 'list'], { reject: false })).stdout;
    expect(namespaces).not.toContain(tag);
    expect(left, 'guests left running').toEqual([]);
  }, 30_000);

  it('refuses a client certificate from another CA, no client certificate, an expired one, and plaintext TCP', async () => {
    const prober = new RemoteHost(hostOpts('prober', certs.hostA, { healthIntervalMs: 0 }));
    const stranger = await prober.ok('try-host', { tls: { ...certs.stranger, ca: certs.ca } });
    expect(stranger).toMatchObject({ connected: false, error: { name: 'PluginUnreachableError' } });
    expect((stranger.error as { message: string }).message).toMatch(/certificate was refused: certificate is not signed by the client CA/);

    const expired = await prober.ok('try-host', { tls: { ...certs.expired, ca: certs.ca } });
    expect(expired).toMatchObject({ connected: false, error: { name: 'PluginUnreachableError' } });
    expect((expired.error as { message: string }).message).toMatch(/certificate has expired \(CERT_HAS_EXPIRED\)/);

    const noCert = await prober.ok('probe', { kind: 'no-cert', host: PLUGIN_IP, port: PORT, ca: certs.ca });
    expect(noCert.data).toMatch(/"error".*refused the connection: .*certificate was refused: no certificate"/);
    expect(noCert.data).not.toContain('"result"');

    const plaintext = await prober.ok('probe', { kind: 'plaintext', host: PLUGIN_IP, port: PORT });
    expect(plaintext.data).not.toContain('jsonrpc');
    expect(plaintext.timedOut).toBeUndefined();
    prober.child.stdin!.end();
    await eventually(() => /refused a connection/.test(pluginErr), 5_000, 'the plugin to log its refusals');
  }, 60_000);

  let hostA: RemoteHost;
  const vmIds = ['netns-a', 'netns-b'];

  it('a second host is refused with an error naming the first', async () => {
    hostA = new RemoteHost(hostOpts('a', certs.hostA, { healthIntervalMs: 500, healthTimeoutMs: 1_000 }));
    await hostA.ok('connect');
    for (const vmId of vmIds) expect(await hostA.ok('create', { vmId })).toEqual({ status: 'running' });
    const prober = new RemoteHost(hostOpts('prober2', certs.hostB, { healthIntervalMs: 0 }));
    const second = await prober.ok('try-host', { tls: { ...certs.hostB, ca: certs.ca } });
    prober.child.stdin!.end();
    expect(second).toMatchObject({ connected: false, error: { name: 'PluginUnreachableError' } });
    expect((second.error as { message: string }).message).toMatch(
      new RegExp(`already serves a host: ${HOST_IP.replace(/\./g, '\\.')}:\\d+ \\(certificate CN=host-a\\), connected since`),
    );
  }, 60_000);

  it('a host is SIGKILLed while its remote plugin serves running VMs: a new host reconnects, every VM is there and answers, the plugin was never restarted', async () => {
    const pid = plugin!.pid!;
    const guests = await Promise.all(vmIds.map(async (vmId) => (await hostA.ok('info', { vmId })).pid));
    hostA.child.kill('SIGKILL');
    await eventually(() => hostA.child.signalCode !== null, 5_000, 'host A to die');

    // The same state directory, as the host's restart would have it.
    const next = new RemoteHost(hostOpts('a', certs.hostA, { healthIntervalMs: 500, healthTimeoutMs: 1_000, maxRestarts: 0 }));
    const report = await next.ok('reattach');
    expect(report).toMatchObject({ lost: [], unanswered: [], abandoned: [] });
    expect([...(report.recovered as string[])].sort()).toEqual(vmIds);
    for (const [i, vmId] of vmIds.entries()) expect(await next.ok('info', { vmId })).toEqual({ status: 'running', pid: guests[i] });
    expect(plugin!.pid).toBe(pid);
    expect(alive(pid)).toBe(true);
    expect(plugin!.exitCode).toBeNull();
    const status = await next.ok('status');
    expect(status.plugins).toEqual([expect.objectContaining({ plugin: PLUGIN, state: 'running', address: ADDRESS, vms: 2, lost: 0 })]);
    hostA = next;
  }, 60_000);

  it('the network is cut past the health deadline and restored: calls fail typed, nothing is lost before the configured time, everything answers after', async () => {
    // The host from the previous test pings every 0.5 s and waits 1 s for the answer; its VMs would be reported
    // lost after 8 s of outage.
    hostA.child.stdin!.end();
    await eventually(() => hostA.child.exitCode !== null, 10_000, 'the previous host to leave');
    const LOST_AFTER_MS = 8_000;
    const host = new RemoteHost(
      hostOpts('a', certs.hostA, { healthIntervalMs: 500, healthTimeoutMs: 1_000, maxRestarts: 0, backoffMs: 100, maxBackoffMs: 1_000, unreachableLostAfterMs: LOST_AFTER_MS }),
    );
    const report = await host.ok('reattach');
    expect([...(report.recovered as string[])].sort()).toEqual(vmIds);
    const pid = plugin!.pid!;
    const recoveredBefore = host.eventsNamed('vm-recovered').length;
    // Under way when the cut comes.
    const waiting = host.send('wait', { vmId: vmIds[0] }, 60_000);
    await new Promise((r) => setTimeout(r, 200));

    const notesBefore = hostNotes.length;
    const cutAt = Date.now();
    await ip('-n', nsPlugin, 'link', 'set', vethPlugin, 'down');
    const inFlight = await waiting;
    expect(inFlight.ok).toBe(false);
    expect(inFlight.error).toMatchObject({ name: 'PluginUnreachableError', code: 'PluginUnreachable' });
    expect(inFlight.error?.message).toMatch(new RegExp(`${ADDRESS.replace(/\./g, '\\.')} is unreachable: no answer to health/ping`));
    await eventually(() => host.eventsNamed('plugin-unreachable').length === 1, 10_000, 'plugin-unreachable');
    const unreachableAt = host.eventsNamed('plugin-unreachable')[0]!.at!;

    // A call made now fails at once, typed; the plugin's state says why and since when.
    const during = await host.send('info', { vmId: vmIds[1], timeoutMs: 20_000 });
    expect(during).toMatchObject({ ok: false, error: { name: 'PluginUnreachableError', code: 'PluginUnreachable' } });
    expect(during.ms).toBeLessThan(2_000);
    const down = await host.ok('status');
    expect(down.plugins).toEqual([
      expect.objectContaining({ state: 'unreachable', unreachable: expect.objectContaining({ since: expect.any(String), reason: expect.any(String) }) }),
    ]);
    expect(down.vms).toEqual({ [vmIds[0]!]: 'running', [vmIds[1]!]: 'running' });
    expect(host.eventsNamed('vm-lost')).toEqual([]);

    // Past the configured time, and not before it, the VMs are reported lost.
    await eventually(() => host.eventsNamed('vm-lost').length === 2, 20_000, 'vm-lost after unreachableLostAfterMs');
    for (const e of host.eventsNamed('vm-lost')) {
      expect(e.at! - unreachableAt).toBeGreaterThanOrEqual(LOST_AFTER_MS - 50);
      expect(e.reason).toMatch(/unreachable for \d+ s/);
    }
    expect((await host.ok('status')).vms).toEqual({ [vmIds[0]!]: 'lost', [vmIds[1]!]: 'lost' });

    await ip('-n', nsPlugin, 'link', 'set', vethPlugin, 'up');
    const restoredAt = Date.now();
    await eventually(() => host.eventsNamed('plugin-reconnected').length === 1, 30_000, 'plugin-reconnected');
    // Every VM re-attached through the same plugin process, and answering.
    await eventually(() => host.eventsNamed('vm-recovered').length === recoveredBefore + 2, 10_000, 'vm-recovered');
    for (const vmId of vmIds) expect(await host.ok('info', { vmId })).toMatchObject({ status: 'running' });
    expect((await host.ok('status')).plugins).toEqual([expect.objectContaining({ state: 'running', reconnects: 1, vms: 2, lost: 0 })]);
    expect(plugin!.pid).toBe(pid);
    expect(alive(pid)).toBe(true);
    expect(host.eventsNamed('plugin-failed')).toEqual([]);
    const reconnected = host.eventsNamed('plugin-reconnected')[0]!;
    expect(reconnected.downMs).toBeGreaterThanOrEqual(restoredAt - cutAt - 2_000);
    // The plugin let its host back in: it heard the dead connection end, or took it as gone after its silence.
    expect(hostNotes.slice(notesBefore)).toEqual([expect.stringMatching(/taken as gone|host gone/), 'host connected']);
    for (const vmId of vmIds) await host.ok('delete', { vmId });
    expect((await host.ok('status')).vms).toEqual({});
    host.child.stdin!.end();
  }, 90_000);
});
