// The QMP client against a scripted QMP server (exact control over ordering, malformed lines and
// disconnects) and against the real QEMU, plus starting and re-attaching QEMU processes.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { type Server, type Socket, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundle } from '../../../../scripts/bundle.mjs';
import { proc } from 'hvplug/plugin-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { buildQemuArgs } from '../../src/cmdline.js';
import { QmpClient, QmpClosedError, QmpCommandError, QmpConnectError, QmpProtocolError, QmpTimeoutError } from '../../src/qmp.js';
import { QemuStartError, attachQemu, connectablePath, killProcessGroup, quitQemu, startQemu } from '../../src/process.js';
import { SKIP_MESSAGE, findQemu, killAllStarted, newRunDir, track } from '../../test-support/guest.js';

const GREETING = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'test' }, capabilities: ['oob'] } };

type Handler = (cmd: { execute: string; arguments?: Record<string, unknown>; id?: number }, sock: Socket, line: string) => void;

const servers: Server[] = [];
const dirs: string[] = [];

async function socketPath(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'hvplug-qmp-'));
  dirs.push(d);
  return join(d, 'qmp.sock');
}

/** A QMP server that greets, answers qmp_capabilities, and hands every other command to `handler`. */
function fakeQmp(path: string, handler: Handler, greeting: unknown = GREETING): Promise<Server> {
  const server = createServer((sock) => {
    sock.write(`${JSON.stringify(greeting)}\r\n`);
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        const cmd = JSON.parse(line) as { execute: string; arguments?: Record<string, unknown>; id?: number };
        buf = buf.slice(nl + 1);
        if (cmd.execute === 'qmp_capabilities') sock.write(`${JSON.stringify({ return: {}, id: cmd.id })}\r\n`);
        else handler(cmd, sock, line);
      }
    });
    sock.on('error', () => undefined);
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(path, () => resolve(server)));
}

const reply = (sock: Socket, msg: unknown): boolean => sock.write(`${JSON.stringify(msg)}\r\n`);

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('QmpClient against a scripted server', () => {
  it('negotiates, correlates answers by id even out of order, and types known results', async () => {
    const path = await socketPath();
    let held: { id?: number; sock: Socket } | undefined;
    await fakeQmp(path, (cmd, sock) => {
      if (cmd.execute === 'slow') held = { id: cmd.id, sock };
      else if (cmd.execute === 'query-status') {
        reply(sock, { return: { running: true, status: 'running' }, id: cmd.id });
        if (held) reply(held.sock, { return: { slow: true }, id: held.id });
      }
    });
    const qmp = await QmpClient.connect(path);
    expect((await qmp.greeting()).QMP.version.qemu).toEqual({ major: 7, minor: 2, micro: 22 });
    const slow = qmp.execute('slow');
    const status = await qmp.execute('query-status');
    expect(status.running).toBe(true);
    expect(await slow).toEqual({ slow: true });
    qmp.close();
  });

  it('sends each command as compact JSON with a numeric id: QEMU reads a command one byte per main-loop turn', async () => {
    const path = await socketPath();
    const lines: string[] = [];
    await fakeQmp(path, (cmd, sock, line) => {
      lines.push(line);
      reply(sock, { return: {}, id: cmd.id });
    });
    const qmp = await QmpClient.connect(path);
    await qmp.execute('stop');
    await qmp.execute('device_del', { id: 'disk1' });
    expect(lines).toEqual(['{"execute":"stop","id":2}', '{"execute":"device_del","arguments":{"id":"disk1"},"id":3}']);
    qmp.close();
  });

  it("rejects with QEMU's error class and description", async () => {
    const path = await socketPath();
    await fakeQmp(path, (cmd, sock) => reply(sock, { error: { class: 'DeviceNotFound', desc: "Device 'x' not found" }, id: cmd.id }));
    const qmp = await QmpClient.connect(path);
    const err = await qmp.execute('device_del', { id: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect(err).toMatchObject({ command: 'device_del', errorClass: 'DeviceNotFound', desc: "Device 'x' not found" });
    expect(String(err)).toContain('DeviceNotFound');
    qmp.close();
  });

  it('emits events, and waitForEvent filters by name and predicate', async () => {
    const path = await socketPath();
    await fakeQmp(path, (cmd, sock) => {
      const ts = { seconds: 1, microseconds: 2 };
      reply(sock, { event: 'DEVICE_DELETED', data: { device: 'other', path: '/machine/peripheral/other' }, timestamp: ts });
      reply(sock, { event: 'DEVICE_DELETED', data: { device: 'disk1', path: '/machine/peripheral/disk1' }, timestamp: ts });
      reply(sock, { event: 'STOP', timestamp: ts });
      reply(sock, { return: {}, id: cmd.id });
    });
    const qmp = await QmpClient.connect(path);
    const seen: string[] = [];
    qmp.on('event', (e) => seen.push(e.event));
    const deleted = qmp.waitForEvent('DEVICE_DELETED', { predicate: (e) => e.data.device === 'disk1', timeoutMs: 2000 });
    const stop = qmp.waitForEvent('STOP', { timeoutMs: 2000 });
    await qmp.execute('device_del', { id: 'disk1' });
    expect((await deleted).data).toEqual({ device: 'disk1', path: '/machine/peripheral/disk1' });
    expect((await stop).data).toEqual({});
    expect(seen).toEqual(['DEVICE_DELETED', 'DEVICE_DELETED', 'STOP']);
    qmp.close();
  });

  it('rejects pending commands and event waits when the connection closes', async () => {
    const path = await socketPath();
    await fakeQmp(path, (cmd, sock) => {
      if (cmd.execute === 'quit') setTimeout(() => sock.destroy(), 50);
    });
    const qmp = await QmpClient.connect(path);
    const hang = qmp.execute('never-answered');
    const wait = qmp.waitForEvent('SHUTDOWN');
    void qmp.execute('quit').catch(() => undefined);
    await expect(hang).rejects.toBeInstanceOf(QmpClosedError);
    await expect(wait).rejects.toBeInstanceOf(QmpClosedError);
    expect(await qmp.closed).toBeInstanceOf(QmpClosedError);
    expect(qmp.isOpen).toBe(false);
    await expect(qmp.execute('query-status')).rejects.toBeInstanceOf(QmpClosedError);
  });

  it('tells a connection QEMU resets as closed, as one it closes', async () => {
    const path = await socketPath();
    // A unix socket closed with data unread in it resets its peer: the server stops reading at quit (on the
    // handle: node's pause() keeps reading into its own buffer), the client sends one more command, and the
    // server goes.
    await fakeQmp(path, (cmd, sock) => {
      if (cmd.execute !== 'quit') return;
      (sock as unknown as { _handle: { readStop(): void } })._handle.readStop();
      setTimeout(() => sock.destroy(), 100);
    });
    const qmp = await QmpClient.connect(path);
    const wait = qmp.waitForEvent('NEVER-SENT');
    void qmp.execute('quit').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 20));
    void qmp.execute('query-status').catch(() => undefined);
    await expect(wait).rejects.toThrow(/closed \(.*ECONNRESET\)/);
    await expect(qmp.execute('query-status')).rejects.toThrow(/closed/);
  });

  it('ends the connection on a line that is not QMP, naming what it saw', async () => {
    const path = await socketPath();
    await fakeQmp(path, (_cmd, sock) => void sock.write('garbage that is not json\r\n'));
    const qmp = await QmpClient.connect(path);
    const err = await qmp.execute('query-status').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpProtocolError);
    expect(String(err)).toContain('garbage that is not json');
    expect(qmp.isOpen).toBe(false);
  });

  it('refuses a known command whose result has the wrong shape', async () => {
    const path = await socketPath();
    await fakeQmp(path, (cmd, sock) => reply(sock, { return: { status: 42 }, id: cmd.id }));
    const qmp = await QmpClient.connect(path);
    await expect(qmp.execute('query-status')).rejects.toBeInstanceOf(QmpProtocolError);
    // Unknown commands are passed through unchecked.
    expect(await qmp.execute('x-anything')).toEqual({ status: 42 });
    qmp.close();
  });

  it('refuses a greeting of the wrong shape', async () => {
    const path = await socketPath();
    await fakeQmp(path, () => undefined, { QMP: { version: 'seven' } });
    await expect(QmpClient.connect(path, { timeoutMs: 2000 })).rejects.toBeInstanceOf(QmpProtocolError);
  });

  it('times out a command that is never answered, and drops its late answer', async () => {
    const path = await socketPath();
    await fakeQmp(path, (cmd, sock) => setTimeout(() => reply(sock, { return: { late: true }, id: cmd.id }), 300));
    const qmp = await QmpClient.connect(path);
    await expect(qmp.execute('slow', undefined, { timeoutMs: 50 })).rejects.toBeInstanceOf(QmpTimeoutError);
    const ac = new AbortController();
    const aborted = qmp.execute('slow', undefined, { signal: ac.signal });
    ac.abort(new Error('caller gave up'));
    await expect(aborted).rejects.toThrow('caller gave up');
    await new Promise((r) => setTimeout(r, 400));
    expect(qmp.isOpen).toBe(true);
    qmp.close();
  });

  it('times out each command at its own deadline: a shorter one sent after a longer one, one answered in time never', async () => {
    const path = await socketPath();
    await fakeQmp(path, (cmd, sock) => {
      if (cmd.execute === 'quick') reply(sock, { return: {}, id: cmd.id });
    });
    const qmp = await QmpClient.connect(path);
    let longSettled = false;
    const long = qmp.execute('never', undefined, { timeoutMs: 1_500 });
    void long.catch(() => undefined).finally(() => (longSettled = true));
    await expect(qmp.execute('quick', undefined, { timeoutMs: 20 })).resolves.toEqual({});
    await expect(qmp.execute('silent', undefined, { timeoutMs: 50 })).rejects.toThrow('QMP silent not answered within 50 ms');
    expect(longSettled).toBe(false);
    await expect(long).rejects.toThrow('QMP never not answered within 1500 ms');
    expect(qmp.isOpen).toBe(true);
    qmp.close();
  });

  it('retries until the socket appears, and gives up at the deadline', async () => {
    const path = await socketPath();
    setTimeout(() => void fakeQmp(path, () => undefined), 300);
    const t0 = Date.now();
    const qmp = await QmpClient.connect(path, { timeoutMs: 5000 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    qmp.close();

    const missing = await socketPath();
    const err = await QmpClient.connect(missing, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpConnectError);
    expect(err).toMatchObject({ code: 'ENOENT' });
  });

  it('times out when the server accepts but never greets (another client holds QEMU’s monitor)', async () => {
    const path = await socketPath();
    const server = createServer(() => undefined);
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    await expect(QmpClient.connect(path, { timeoutMs: 300 })).rejects.toThrow(/no QMP greeting/);
  });
});

const qemu = findQemu();
if (!qemu) console.warn(`skipping real-QEMU QMP tests: ${SKIP_MESSAGE}`);

describe.skipIf(!qemu)('QEMU processes over QMP (no guest)', () => {
  afterEach(killAllStarted);

  const idleArgs = (extra: { kernel?: string } = {}): string[] =>
    buildQemuArgs({
      machine: 'q35',
      accel: 'tcg',
      vcpus: { boot: 1, max: 2 },
      memory: { sizeMiB: 128 },
      qmpSocket: 'qmp.sock',
      console: { kind: 'none' },
      paused: true,
      ...extra,
    });

  it('starts detached in its own session, answers QMP, and reports real error classes', async () => {
    const runDir = await newRunDir();
    const vm = await startQemu({ args: idleArgs(), runDir, qmpSocket: 'qmp.sock' });
    track(vm);
    const greeting = await vm.qmp.greeting();
    expect(greeting.QMP.version.qemu.major).toBeGreaterThanOrEqual(7);
    // Its own session and process group, so the caller's process group signals do not reach it.
    const stat = (await import('node:fs')).readFileSync(`/proc/${vm.pid}/stat`, 'utf8');
    const [pgrp, session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ').slice(2, 4).map(Number);
    expect(pgrp).toBe(vm.pid);
    expect(session).toBe(vm.pid);
    expect(await vm.qmp.execute('query-status')).toMatchObject({ status: 'prelaunch' });
    await expect(vm.qmp.execute('no-such-command')).rejects.toMatchObject({ errorClass: 'CommandNotFound' });
    await expect(vm.qmp.execute('device_del', { id: 'nope' })).rejects.toMatchObject({ errorClass: 'DeviceNotFound' });
    const cpus = await vm.qmp.execute('query-hotpluggable-cpus');
    // QEMU 7.2 lays maxcpus out as cores of one socket: one slot plugged at boot, one free.
    expect(cpus.map((c) => c.props['core-id']).sort()).toEqual([0, 1]);
    expect(cpus.filter((c) => c['qom-path'] === undefined)).toHaveLength(1);
    const shutdown = vm.qmp.waitForEvent('SHUTDOWN', { timeoutMs: 5000 });
    await quitQemu(vm);
    expect((await shutdown).data).toEqual({ guest: false, reason: 'host-qmp-quit' });
    expect(await vm.exited).toEqual({ code: 0, signal: null });
  });

  it("fails with QEMU's stderr when QEMU exits at start (missing kernel)", async () => {
    const runDir = await newRunDir();
    const err = await startQemu({ args: idleArgs({ kernel: '/nonexistent/vmlinuz' }), runDir, qmpSocket: 'qmp.sock' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QemuStartError);
    expect(err).toMatchObject({ exit: { code: 1, signal: null } });
    expect((err as QemuStartError).stderr).toContain("could not open kernel file '/nonexistent/vmlinuz'");
    expect((err as QemuStartError).message).toContain('/nonexistent/vmlinuz');
  });

  it('fails with an install hint when the binary is missing', async () => {
    const runDir = await newRunDir();
    const err = await startQemu({ binary: 'qemu-system-does-not-exist', args: [], runDir, qmpSocket: 'qmp.sock' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QemuStartError);
    expect(String(err)).toMatch(/apt-get install qemu-system-x86/);
  });

  it('re-attaches to a running QEMU after the first client detached, and refuses a wrong pid', async () => {
    const runDir = await newRunDir();
    const first = await startQemu({ args: idleArgs(), runDir, qmpSocket: 'qmp.sock' });
    track(first);
    first.detach();
    expect(proc.isAlive(first.pid)).toBe(true);
    const again = await attachQemu({ pid: first.pid, runDir, qmpSocket: 'qmp.sock' });
    track(again);
    expect(await again.qmp.execute('query-status')).toMatchObject({ status: 'prelaunch' });
    await expect(attachQemu({ pid: process.pid, runDir, qmpSocket: 'qmp.sock' })).rejects.toThrow(/not the QEMU/);
    await killProcessGroup(first.pid, { graceMs: 1000 });
    // A re-attached QEMU is not our child: its exit is noticed by polling, without a status.
    expect(await again.exited).toEqual({ code: null, signal: null });
  });

  it('reaches a QMP socket whose absolute path is too long for sun_path', async () => {
    const base = await newRunDir();
    const runDir = join(base, 'x'.repeat(60), 'y'.repeat(60));
    const vm = await startQemu({ args: idleArgs(), runDir, qmpSocket: 'qmp.sock' });
    track(vm);
    expect(connectablePath(runDir, 'qmp.sock', vm.pid)).toBe(`/proc/${vm.pid}/cwd/qmp.sock`);
    expect(await vm.qmp.execute('query-status')).toMatchObject({ running: false });
  });

  it('keeps QEMU running when the process that started it is SIGKILLed, and a new one re-attaches', async () => {
    const runDir = await newRunDir();
    const starter = join(runDir, 'starter.mjs');
    await bundle(join(import.meta.dirname, '../../test-support/starter.ts'), starter);
    const child = spawn(process.execPath, [starter, runDir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    const { pid } = JSON.parse(line.toString()) as { pid: number };
    try {
      expect(proc.isAlive(pid)).toBe(true);
      child.kill('SIGKILL');
      await once(child, 'exit');
      await new Promise((r) => setTimeout(r, 300));
      expect(proc.isAlive(pid)).toBe(true);
      // The dead starter's QMP connection was closed by the kernel, so QEMU accepts the new client.
      const vm = await attachQemu({ pid, runDir, qmpSocket: 'qmp.sock' });
      track(vm);
      expect(await vm.qmp.execute('query-status')).toMatchObject({ status: 'prelaunch' });
      await quitQemu(vm);
    } finally {
      child.kill('SIGKILL');
      await killProcessGroup(pid, { graceMs: 500 });
    }
    expect(proc.isAlive(pid)).toBe(false);
  });
});
