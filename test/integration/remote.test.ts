import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PluginHost, PluginSpec, PluginUnreachableError, type PluginSpecInput } from 'hvplug';
import { proc } from 'hvplug/plugin-sdk';
import { execa } from 'execa';
import { alive, CLI, ensureCliBuilt, eventually, memoryLogger, pluginExecutable, processesUnder, removeTempDirs, tempDir } from '../helpers.js';
import { makeCerts, type Certs } from '../remote-certs.js';

const PLUGIN = 'example-proprietary';
const INITIALIZE_BODY = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersions: ['1.0'], host: { name: 'test', version: '0' }, stateDir: '/tmp', runtimeDir: '/tmp', logLevel: 'info' },
});
const INITIALIZE = `Content-Length: ${Buffer.byteLength(INITIALIZE_BODY)}\r\n\r\n${INITIALIZE_BODY}`;
const plugins: ChildProcess[] = [];
const hosts: PluginHost[] = [];
let certs: Certs;

beforeAll(async () => {
  certs = await makeCerts(await tempDir('hvplug-certs-'));
}, 60_000);

afterAll(async () => {
  await Promise.all(hosts.map((h) => h.close().catch(() => undefined)));
  for (const p of plugins) if (p.pid !== undefined && alive(p.pid)) process.kill(p.pid, 'SIGKILL');
  await eventually(() => plugins.every((p) => p.exitCode !== null || p.signalCode !== null), 10_000, 'the plugins to exit');
  // No guest of a plugin started here outlives the file (their command lines name the test's directories).
  const left = processesUnder(['/hvplug-remote-']).map((pid) => `${pid}: ${(proc.cmdline(pid) ?? []).join(' ')}`);
  for (const line of left) process.kill(Number(line.split(':')[0]), 'SIGKILL');
  await removeTempDirs();
  expect(left, 'guests left running').toEqual([]);
});

/** Starts the bundled example plugin listening; resolves with the address it announced. */
async function listening(args: string[]): Promise<{ child: ChildProcess; address: string; stderr: () => string }> {
  const child = spawn(pluginExecutable(PLUGIN), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  plugins.push(child);
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const lines = createInterface({ input: child.stdout! });
  const address = await new Promise<string>((resolve, reject) => {
    lines.on('line', (line) => {
      const m = /^listening (\S+)$/.exec(line);
      if (m) resolve(m[1] as string);
    });
    child.once('exit', (code) => reject(new Error(`the plugin exited (${code}) before listening: ${err}`)));
  });
  return { child, address, stderr: () => err };
}

async function unixPlugin(): Promise<{ child: ChildProcess; address: string }> {
  const dir = await tempDir('hvplug-remote-');
  return listening(['--listen', `unix:${join(dir, 'plugin.sock')}`, '--runtime-dir', join(dir, 'plugin-run')]);
}

async function tlsPlugin(): Promise<{ child: ChildProcess; address: string; stderr: () => string }> {
  const dir = await tempDir('hvplug-remote-');
  return listening([
    '--listen',
    'tls://127.0.0.1:0',
    '--cert',
    certs.server.cert,
    '--key',
    certs.server.key,
    '--client-ca',
    certs.ca,
    '--runtime-dir',
    join(dir, 'plugin-run'),
  ]);
}

async function hostFor(spec: Omit<PluginSpecInput, 'name'>, supervision = {}): Promise<PluginHost> {
  const dir = await tempDir('hvplug-remote-host-');
  const host = new PluginHost({
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logger: memoryLogger().logger,
    plugins: [{ name: PLUGIN, ...spec }],
    supervision: { healthIntervalMs: 0, ...supervision },
  });
  hosts.push(host);
  return host;
}

async function lifecycle(host: PluginHost): Promise<void> {
  const hv = await host.hypervisor(PLUGIN);
  const vm = await hv.createVm({ config: {} });
  await vm.start();
  expect((await vm.info()).status).toBe('running');
  await vm.stop();
  expect((await vm.info()).status).toBe('stopped');
  await vm.delete();
  expect((await host.records()).records).toEqual([]);
}

describe('remote plugins: the protocol over a unix socket', () => {
  it('a VM is created, started, stopped and deleted through PluginHost against a listening plugin', async () => {
    const { child, address } = await unixPlugin();
    const host = await hostFor({ connect: address });
    await lifecycle(host);
    await host.close();
    // The host going away ends its connection, not the plugin.
    expect(alive(child.pid!)).toBe(true);
  });

  it('a second host is refused with an error naming the first; after the first leaves, it gets in', async () => {
    const { address } = await unixPlugin();
    const first = await hostFor({ connect: address });
    await first.hypervisor(PLUGIN);
    const second = await hostFor({ connect: address });
    await expect(second.hypervisor(PLUGIN)).rejects.toThrow(/already serves a host: a client on the unix socket, connected since .*one host at a time/);
    await first.close();
    await lifecycle(await hostFor({ connect: address }));
  });

  it('a lost connection fails the calls under way with PluginUnreachableError, and the host lives on', async () => {
    const { child, address } = await unixPlugin();
    const host = await hostFor({ connect: address }, { maxRestarts: 0 });
    const hv = await host.hypervisor(PLUGIN);
    const vm = await hv.createVm({ config: {} });
    await vm.start();
    // The guest outlives its plugin, as VMs do: this test ends it.
    const guest = (await vm.info()).pid;
    // A call that waits, under way when the plugin goes.
    const waiting = vm.wait({ until: ['stopped'] }, { timeoutMs: 30_000 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGKILL');
    const err = await waiting;
    expect(err).toBeInstanceOf(PluginUnreachableError);
    expect((err as PluginUnreachableError).message).toContain(address);
    if (guest !== undefined && alive(guest)) process.kill(guest, 'SIGKILL');
  });
});

describe('remote plugins: outages', () => {
  it('a plugin out of reach is waited for, never failed; its VMs are lost after unreachableLostAfterMs, and the reconnect reconciles them with what the plugin serves', async () => {
    const dir = await tempDir('hvplug-remote-');
    const args = ['--listen', `unix:${join(dir, 'plugin.sock')}`, '--runtime-dir', join(dir, 'plugin-run')];
    const first = await listening(args);
    // No restart at all would be allowed a spawned plugin: the crash-loop limit is not for connections.
    const host = await hostFor({ connect: first.address }, { maxRestarts: 0, backoffMs: 50, maxBackoffMs: 200, unreachableLostAfterMs: 1_000 });
    const events: string[] = [];
    host.on('plugin-unreachable', () => events.push('unreachable'));
    host.on('plugin-reconnected', () => events.push('reconnected'));
    host.on('plugin-failed', () => events.push('failed'));
    host.on('vm-lost', (e) => events.push(`lost ${e.vmId}`));
    host.on('vm-recovered', (e) => events.push(`recovered ${e.vmId}`));
    const hv = await host.hypervisor(PLUGIN);
    const kept = await hv.createVm({ vmId: 'kept', config: {} });
    await kept.start();
    const gone = await hv.createVm({ vmId: 'gone', config: {} });
    await gone.start();
    const gonePid = (await gone.info()).pid as number;

    first.child.kill('SIGKILL');
    await eventually(() => events.includes('unreachable'), 5_000, 'plugin-unreachable');
    // Calls fail at once, typed; the VMs are not lost yet.
    const err = await kept.info({ timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginUnreachableError);
    expect((err as PluginUnreachableError).address).toBe(first.address);
    expect(await host.plugins()).toEqual([
      expect.objectContaining({ plugin: PLUGIN, state: 'unreachable', address: first.address, unreachable: expect.objectContaining({ reason: expect.any(String) }) }),
    ]);
    expect(events.filter((e) => e.startsWith('lost'))).toEqual([]);
    await eventually(() => events.filter((e) => e.startsWith('lost')).length === 2, 10_000, 'both VMs reported lost');
    // Written just after the event.
    await eventually(async () => (await host.records()).records.every((r) => r.status === 'lost'), 5_000, 'lost in the records');
    // Attempts every 200 ms for a second more: still waiting, not failed.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(events).not.toContain('failed');
    expect((await host.plugins())[0]?.unreachable?.attempts).toBeGreaterThan(3);

    // One guest ends while nobody watches; the plugin comes back (a new process on the same socket).
    process.kill(gonePid, 'SIGKILL');
    await eventually(() => !alive(gonePid), 5_000, 'the guest to die');
    await listening(args);
    await eventually(() => events.includes('reconnected'), 10_000, 'plugin-reconnected');
    expect(events.slice(events.indexOf('reconnected') - 2).sort()).toEqual(['lost gone', 'reconnected', 'recovered kept']);
    expect(kept.status).toBe('running');
    expect(gone.status).toBe('lost');
    expect((await kept.info()).status).toBe('running');
    const statuses = Object.fromEntries((await host.records()).records.map((r) => [r.vmId, r.status]));
    expect(statuses).toEqual({ kept: 'running', gone: 'lost' });
    expect(await host.plugins()).toEqual([expect.objectContaining({ state: 'running', reconnects: 1, vms: 2, lost: 1 })]);
    await kept.stop({ force: true });
    await kept.delete();
    await gone.delete();
  }, 60_000);
});

describe('remote plugins: unreachableLostAfterMs beyond a timer', () => {
  it('a setting longer than the longest timer (2^31 ms) does not report the VMs lost at the start of the outage', async () => {
    const dir = await tempDir('hvplug-remote-');
    const plugin = await listening(['--listen', `unix:${join(dir, 'plugin.sock')}`, '--runtime-dir', join(dir, 'plugin-run')]);
    const host = await hostFor({ connect: plugin.address }, { backoffMs: 50, maxBackoffMs: 200, unreachableLostAfterMs: 2 ** 31 });
    const events: string[] = [];
    host.on('plugin-unreachable', () => events.push('unreachable'));
    host.on('vm-lost', (e) => events.push(`lost ${e.vmId}`));
    const vm = await (await host.hypervisor(PLUGIN)).createVm({ vmId: 'far', config: {} });
    await vm.start();
    const guest = (await vm.info()).pid as number;
    try {
      plugin.child.kill('SIGKILL');
      await eventually(() => events.includes('unreachable'), 5_000, 'plugin-unreachable');
      // 24.8 days and a millisecond from now, not one millisecond.
      await new Promise((r) => setTimeout(r, 1_000));
      expect(events).toEqual(['unreachable']);
      expect(vm.status).toBe('running');
    } finally {
      if (alive(guest)) process.kill(guest, 'SIGKILL');
    }
  }, 30_000);
});

describe('remote plugins: a host connection gone silent', () => {
  it('is taken as gone after --host-silence-ms when another host connects, which is served; a pinging host is never', async () => {
    const dir = await tempDir('hvplug-remote-');
    const { address } = await listening(['--listen', `unix:${join(dir, 'plugin.sock')}`, '--runtime-dir', join(dir, 'plugin-run'), '--host-silence-ms', '1000']);
    // Pings every 200 ms: never silent.
    const pinging = await hostFor({ connect: address }, { healthIntervalMs: 200 });
    await pinging.hypervisor(PLUGIN);
    await new Promise((r) => setTimeout(r, 2_500));
    await expect((await hostFor({ connect: address })).hypervisor(PLUGIN)).rejects.toThrow(/already serves a host/);
    await pinging.close();

    // No pings: silent once its calls are done, as a host behind a cut network would be.
    const silent = await hostFor({ connect: address }, { backoffMs: 50, maxBackoffMs: 200 });
    await silent.hypervisor(PLUGIN);
    const unreachable = new Promise<{ reason: string }>((r) => silent.once('plugin-unreachable', r));
    await new Promise((r) => setTimeout(r, 2_500));
    const next = await hostFor({ connect: address });
    await lifecycle(next);
    // The silent host lost its connection, and its reconnects are refused: the plugin serves the next one now.
    expect((await unreachable).reason).toMatch(/closed|reset|EPIPE|already serves/);
    await eventually(async () => /already serves a host/.test((await silent.plugins())[0]?.unreachable?.reason ?? ''), 5_000, 'a refused reconnect');
  }, 30_000);
});

describe('remote plugins: mutual TLS on 127.0.0.1', () => {
  const tlsSpec = (address: string, who: { cert: string; key: string }, ca = certs.ca): Omit<PluginSpecInput, 'name'> => ({
    connect: address,
    tls: { cert: who.cert, key: who.key, ca },
    startTimeoutMs: 5_000,
  });

  it('a VM is created, started, stopped and deleted through PluginHost', async () => {
    const { address } = await tlsPlugin();
    expect(address).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    await lifecycle(await hostFor(tlsSpec(address, certs.hostA)));
  });

  it('refuses a host certificate from another CA, with the reason', async () => {
    const { address, stderr } = await tlsPlugin();
    const host = await hostFor(tlsSpec(address, certs.stranger));
    const err = await host.hypervisor(PLUGIN).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginUnreachableError);
    expect((err as Error).message).toMatch(/refused the connection: .*certificate was refused: certificate is not signed by the client CA/);
    await eventually(() => /refused a connection/.test(stderr()), 5_000, 'the plugin to log the refusal');
  });

  it('refuses an expired host certificate', async () => {
    const { address } = await tlsPlugin();
    const err = await (await hostFor(tlsSpec(address, certs.expired))).hypervisor(PLUGIN).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginUnreachableError);
    expect((err as Error).message).toMatch(/certificate was refused: certificate has expired \(CERT_HAS_EXPIRED\)/);
  });

  it('the host refuses a plugin whose certificate its CA did not sign', async () => {
    const { address } = await tlsPlugin();
    const err = await (await hostFor(tlsSpec(address, certs.hostA, certs.otherCa))).hypervisor(PLUGIN).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginUnreachableError);
    expect((err as Error).message).toMatch(/self[- ]signed|unable to (get|verify)|certificate/i);
  });

  it('refuses a client without a certificate, and tells it why', async () => {
    const { address } = await tlsPlugin();
    const port = Number(address.split(':').pop());
    const ca = await readFile(certs.ca);
    const answer = await new Promise<string>((resolve) => {
      let data = '';
      const s = tls.connect({ host: '127.0.0.1', port, ca, minVersion: 'TLSv1.3' }, () => s.write(INITIALIZE));
      s.on('data', (c: Buffer) => (data += c.toString()));
      s.on('error', (e) => resolve(`error: ${e.message}`));
      s.on('close', () => resolve(data));
    });
    expect(answer).toMatch(/"error".*refused the connection: .*certificate was refused/);
    expect(answer).not.toContain('"result"');
  });

  it('a plaintext client gets no protocol from the TLS port', async () => {
    const { address } = await tlsPlugin();
    const port = Number(address.split(':').pop());
    const got = await new Promise<string>((resolve) => {
      let data = '';
      const s = net.connect({ host: '127.0.0.1', port }, () => s.write(INITIALIZE));
      s.on('data', (c: Buffer) => (data += c.toString('latin1')));
      s.on('error', () => undefined);
      s.on('close', () => resolve(data));
    });
    expect(got).not.toContain('jsonrpc');
  });

  it('a second host is refused naming the first by address and certificate', async () => {
    const { address } = await tlsPlugin();
    const first = await hostFor(tlsSpec(address, certs.hostA));
    await first.hypervisor(PLUGIN);
    const err = await (await hostFor(tlsSpec(address, certs.hostB))).hypervisor(PLUGIN).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/already serves a host: 127\.0\.0\.1:\d+ \(certificate CN=host-a\)/);
  });
});

/**
 * A TCP relay between host and plugin that can put bytes on the wire toward the host, as anyone on the path can,
 * and from then on drop what the host sends (its TLS alert among it): a peer that does not hang up. Closing either
 * side closes the other.
 */
async function relay(target: string): Promise<{ address: string; inject: (bytes: Buffer) => void; close: () => void }> {
  const port = Number(target.split(':').pop());
  const toHost = new Map<net.Socket, net.Socket>();
  const server = net.createServer((fromHost) => {
    const toPlugin = net.connect({ host: '127.0.0.1', port });
    for (const s of [fromHost, toPlugin]) {
      s.on('error', () => undefined);
      s.on('close', () => {
        fromHost.destroy();
        toPlugin.destroy();
        toHost.delete(fromHost);
      });
    }
    fromHost.pipe(toPlugin);
    toPlugin.pipe(fromHost);
    toHost.set(fromHost, toPlugin);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const bound = server.address() as net.AddressInfo;
  return {
    address: `tls://127.0.0.1:${bound.port}`,
    inject: (bytes) => {
      for (const [fromHost, toPlugin] of toHost) {
        fromHost.unpipe(toPlugin);
        fromHost.resume();
        fromHost.write(bytes);
      }
    },
    close: () => {
      for (const s of toHost.keys()) s.destroy();
      server.close();
    },
  };
}

/** A TLS 1.3 application-data record of 32 bytes no key encrypted: its authentication fails. */
const FORGED_RECORD = Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x20]), Buffer.alloc(32, 0x5a)]);

describe('remote plugins: a hostile network between host and plugin', () => {
  it('a TLS record that fails authentication after the handshake ends the connection: a call under way fails at once, saying so, and the host reconnects', async () => {
    const plugin = await tlsPlugin();
    const path = await relay(plugin.address);
    // Health pings off (hostFor's default): nothing but the socket's own error can tell the host.
    const host = await hostFor({ connect: path.address, tls: { cert: certs.hostA.cert, key: certs.hostA.key, ca: certs.ca }, startTimeoutMs: 5_000 }, { backoffMs: 50, maxBackoffMs: 200 });
    const events: string[] = [];
    host.on('plugin-unreachable', (e) => events.push(`unreachable ${e.reason}`));
    host.on('plugin-reconnected', () => events.push('reconnected'));
    host.on('vm-lost', (e) => events.push(`lost ${e.vmId}`));
    const vm = await (await host.hypervisor(PLUGIN)).createVm({ vmId: 'forged', config: {} });
    await vm.start();
    const guest = (await vm.info()).pid as number;
    try {
      // Under way, and writing nothing more: only what the host reads can end it before its deadline.
      const waiting = vm.wait({ until: ['stopped'] }, { timeoutMs: 8_000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      await new Promise((r) => setTimeout(r, 100));
      const started = Date.now();
      path.inject(FORGED_RECORD);
      const err = await waiting;
      expect(err).toBeInstanceOf(PluginUnreachableError);
      expect((err as PluginUnreachableError).reason).toMatch(/bad record mac/);
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(events[0]).toMatch(/^unreachable .*bad record mac/);
      // The next connection is clean: the VM is re-attached, never reported lost.
      await eventually(() => events.includes('reconnected'), 10_000, 'plugin-reconnected');
      expect((await vm.info()).status).toBe('running');
      expect(events.filter((e) => e.startsWith('lost'))).toEqual([]);
      await vm.stop({ force: true });
      await vm.delete();
    } finally {
      path.close();
      if (alive(guest)) process.kill(guest, 'SIGKILL');
    }
  }, 30_000);
});

/** A host process with the default logger (stderr), whose plugin is connected to at argv[2]; says `connected`. */
const DEFAULT_LOGGER_HOST = `
const [core, address, dir] = process.argv.slice(1);
const { PluginHost } = await import(core);
const host = new PluginHost({
  stateDir: dir + '/state',
  runtimeDir: dir + '/run',
  plugins: [{ name: 'far', connect: address }],
  supervision: { healthIntervalMs: 0, backoffMs: 1, maxBackoffMs: 2, unreachableLostAfterMs: 1500 },
});
await host.hypervisor('far');
console.log('connected');
// The reconnect timers hold nothing up (an embedder done with its host exits): this process waits for its end.
setInterval(() => undefined, 1_000);
`;

describe('remote plugins: a peer that stalls the start', () => {
  const stalled = async (server: net.Server): Promise<{ address: string; close: () => void }> => {
    const held = new Set<net.Socket>();
    server.on('connection', (s) => held.add(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      address: `tls://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
      close: () => {
        for (const s of held) s.destroy();
        server.close();
      },
    };
  };
  const spec = (address: string): Omit<PluginSpecInput, 'name'> => ({
    connect: address,
    tls: { cert: certs.hostA.cert, key: certs.hostA.key, ca: certs.ca },
    startTimeoutMs: 1_000,
  });

  it('one that takes the TCP connection and never begins TLS: unreachable at startTimeoutMs, saying so', async () => {
    const peer = await stalled(net.createServer((s) => s.on('error', () => undefined)));
    try {
      const started = Date.now();
      const err = await (await hostFor(spec(peer.address))).hypervisor(PLUGIN).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PluginUnreachableError);
      expect((err as Error).message).toContain(`${peer.address} is unreachable: no connection within 1000 ms`);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      peer.close();
    }
  });

  it('one that finishes TLS and never answers initialize: TimeoutError at startTimeoutMs, naming where it was', async () => {
    const [cert, key, ca] = await Promise.all([readFile(certs.server.cert), readFile(certs.server.key), readFile(certs.ca)]);
    const server = tls.createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, (s) => s.on('error', () => undefined));
    const peer = await stalled(server);
    try {
      const started = Date.now();
      const err = await (await hostFor(spec(peer.address))).hypervisor(PLUGIN).catch((e: unknown) => e);
      expect((err as Error).name).toBe('TimeoutError');
      expect((err as Error).message).toBe(`plugin ${PLUGIN} at ${peer.address} did not answer initialize within 1 s`);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      peer.close();
    }
  });

  it('one slow to connect and then silent: the whole start, connection and initialize, is bounded by startTimeoutMs', async () => {
    const [cert, key, ca] = await Promise.all([readFile(certs.server.cert), readFile(certs.server.key), readFile(certs.ca)]);
    const silent = await stalled(tls.createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, (s) => s.on('error', () => undefined)));
    // TLS begins 1.5 s after the TCP connection, within the 2 s the start has; then nothing answers.
    const slow = await stalled(
      net.createServer((fromHost) => {
        fromHost.on('error', () => undefined);
        fromHost.pause();
        setTimeout(() => {
          if (fromHost.destroyed) return;
          const toPeer = net.connect({ host: '127.0.0.1', port: Number(silent.address.split(':').pop()) });
          toPeer.on('error', () => fromHost.destroy());
          fromHost.on('close', () => toPeer.destroy());
          fromHost.pipe(toPeer).pipe(fromHost);
        }, 1_500);
      }),
    );
    try {
      const started = Date.now();
      const err = await (await hostFor({ ...spec(slow.address), startTimeoutMs: 2_000 })).hypervisor(PLUGIN).catch((e: unknown) => e);
      const took = Date.now() - started;
      expect((err as Error).message).toBe(`plugin ${PLUGIN} at ${slow.address} did not answer initialize within 2 s`);
      expect(took).toBeLessThan(2_800);
    } finally {
      slow.close();
      silent.close();
    }
  });
});

describe('remote plugins: many reconnects', () => {
  it("each attempt's logger leaves the host's own log lines as they were: nothing accumulates across hundreds of attempts", async () => {
    const dir = await tempDir('hvplug-remote-');
    const socket = join(dir, 'plugin.sock');
    const plugin = await listening(['--listen', `unix:${socket}`, '--runtime-dir', join(dir, 'plugin-run')]);
    const core = new URL('../../dist/pkg/core.js', import.meta.url).href;
    const host = spawn(process.execPath, ['--input-type=module', '-e', DEFAULT_LOGGER_HOST, core, plugin.address, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    host.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    let attempts = 0;
    let server: net.Server | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        host.stdout.on('data', (c: Buffer) => c.toString().includes('connected') && resolve());
        host.once('exit', (code) => reject(new Error(`the host exited (${code}): ${stderr}`)));
      });
      // The plugin goes; in its place a socket that takes each connection and closes it: every attempt gets as far
      // as a connection, and a client of its own.
      plugin.child.kill('SIGKILL');
      await new Promise((r) => plugin.child.once('exit', r));
      await (await import('node:fs/promises')).unlink(socket);
      const s = net.createServer((c) => {
        attempts++;
        c.destroy();
      });
      server = s;
      await new Promise<void>((r) => s.listen(socket, r));
      await eventually(() => /unreachable too long/.test(stderr), 10_000, 'the host to report its VMs lost');
      expect(attempts).toBeGreaterThan(100);
      const line = stderr.split('\n').find((l) => l.includes('unreachable too long')) as string;
      // Its own fields, once: {"plugin":"far","at":"unix:…","downMs":…}.
      expect(line.split('"at":').length - 1).toBe(1);
      expect(line.length).toBeLessThan(1_000);
    } finally {
      host.kill('SIGKILL');
      server?.close();
    }
  }, 30_000);
});

describe('remote plugins: a connection that keeps dropping', () => {
  it('one lost again soon after each reconnect does not reset the backoff: attempts end up maxBackoffMs apart', async () => {
    const dir = await tempDir('hvplug-remote-');
    const plugin = await unixPlugin();
    const upstream = plugin.address.slice('unix:'.length);
    // Each connection reaches the plugin, is served (initialize, the re-attach) and is cut 100 ms after it began.
    const starts: number[] = [];
    const flapping = net.createServer((fromHost) => {
      starts.push(Date.now());
      const toPlugin = net.connect({ path: upstream });
      const cut = (): void => {
        fromHost.destroy();
        toPlugin.destroy();
      };
      for (const s of [fromHost, toPlugin]) s.on('error', cut).on('close', cut);
      fromHost.pipe(toPlugin).pipe(fromHost);
      setTimeout(cut, 100);
    });
    const path = join(dir, 'flapping.sock');
    await new Promise<void>((r) => flapping.listen(path, r));
    const host = await hostFor({ connect: `unix:${path}` }, { backoffMs: 20, maxBackoffMs: 400 });
    let reconnects = 0;
    host.on('plugin-reconnected', () => reconnects++);
    try {
      await host.hypervisor(PLUGIN);
      await new Promise((r) => setTimeout(r, 4_000));
      expect(reconnects).toBeGreaterThan(2);
      // After the first few, every attempt waits the longest backoff: about ten in 4 s, not one every ~130 ms.
      const gaps = starts.slice(1).map((t, i) => t - (starts[i] as number));
      expect(gaps.slice(6).filter((g) => g < 400)).toEqual([]);
      expect(starts.length).toBeLessThan(16);
    } finally {
      await host.close();
      flapping.close();
    }
  }, 30_000);
});

describe('remote plugins: specs', () => {
  it('tcp:// is refused when the spec is read: there is no plaintext TCP', () => {
    const r = PluginSpec.safeParse({ name: 'x', connect: 'tcp://10.0.0.2:7443' });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.message).join()).toMatch(/plaintext TCP is not supported/);
  });

  it('a tls:// address needs the TLS files, and a spec has a command or an address, not both', () => {
    expect(PluginSpec.safeParse({ name: 'x', connect: 'tls://node-b:7443' }).error?.issues[0]?.message).toMatch(/needs tls/);
    expect(PluginSpec.safeParse({ name: 'x', command: '/bin/x', connect: 'unix:/s' }).error?.issues[0]?.message).toMatch(/either command or connect/);
    expect(PluginSpec.safeParse({ name: 'x' }).success).toBe(false);
    expect(PluginSpec.safeParse({ name: 'x', connect: 'unix:/run/p.sock' }).success).toBe(true);
  });

  it('a listening plugin refuses tcp:// and a TLS address without its files, with status 2', async () => {
    for (const args of [['--listen', 'tcp://127.0.0.1:0'], ['--listen', 'tls://127.0.0.1:0', '--cert', certs.server.cert]]) {
      const child = spawn(pluginExecutable(PLUGIN), args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const code = await new Promise<number | null>((r) => child.once('exit', r));
      expect(code).toBe(2);
      expect(err).toMatch(/plaintext TCP is not supported|needs --key, --client-ca/);
    }
  });

  it('a listening plugin refuses a --host-silence-ms that is not a whole number of milliseconds, with status 2', async () => {
    const dir = await tempDir('hvplug-remote-');
    const child = spawn(pluginExecutable(PLUGIN), ['--listen', `unix:${join(dir, 'p.sock')}`, '--host-silence-ms', '1.5s'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    expect(await new Promise<number | null>((r) => child.once('exit', r))).toBe(2);
    expect(err).toMatch(/--host-silence-ms 1\.5s: expected a whole number of milliseconds/);
  });

  it('the TLS files a config file names are taken relative to it', async () => {
    const dir = await tempDir('hvplug-remote-conf-');
    const file = join(dir, 'hvplug.toml');
    await (await import('node:fs/promises')).writeFile(
      file,
      '[plugins.far]\nconnect = "tls://node-b:7443"\ntls = { cert = "host.crt", key = "host.key", ca = "ca.crt" }\n',
    );
    const { PluginCatalog } = await import('hvplug');
    const spec = await new PluginCatalog({ configFile: file }).resolve('far');
    expect(spec).toMatchObject({ connect: 'tls://node-b:7443', tls: { cert: join(dir, 'host.crt'), key: join(dir, 'host.key'), ca: join(dir, 'ca.crt') } });
    expect(spec.command).toBeUndefined();
    await readFile(file);
  });
});

describe('remote plugins: hvplug conformance --connect', () => {
  it('runs checks against a plugin listening on TLS, and refuses tcp:// as a usage error', async () => {
    await ensureCliBuilt();
    const { address } = await tlsPlugin();
    const tls = ['--cert', certs.hostA.cert, '--key', certs.hostA.key, '--ca', certs.ca];
    const run = await execa('node', [CLI, 'conformance', '--quiet', '--only', 'handshake,lifecycle', '--connect', address, ...tls], { reject: false });
    expect(run.stdout).toMatch(/conformant: nothing unexpected failed/);
    expect(run.stdout).toMatch(/\d+ passed, 0 failed/);
    expect(run.exitCode).toBe(0);
    const bad = await execa('node', [CLI, 'conformance', '--connect', 'tcp://127.0.0.1:1'], { reject: false });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/plaintext TCP is not supported/);
  }, 120_000);
});
