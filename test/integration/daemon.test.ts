import { existsSync, readFileSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { execa, execaSync } from 'execa';
import { describe, expect, it } from 'vitest';
import { proc } from 'hvplug/plugin-sdk';
import { encodeFrame, FrameDecoder } from 'hvplug/transport';
import { root } from '../../scripts/bundle.mjs';
import { alive, CLI, eventually, tempDir } from '../helpers.js';
import { API_VERSION, CALL_REF_DECLINED_CODE, DAEMON_METHODS } from '../../src/daemon/api.js';
import { cli, daemonTestHooks, dirs, ok, ps, startDaemon, stopDaemon, writeDaemonLock, type Dirs, type PsRow } from '../daemon-helpers.js';

/**
 * `hvplug daemon` through the built CLI: the daemon and every command are processes of their own, as a user runs them
 * from two terminals.
 */
const PLUGIN = 'example-proprietary';

const guests = daemonTestHooks();

/** The daemon's children: the plugin processes it started. */
function childrenOf(pid: number): number[] {
  return proc.pids().filter((p) => proc.readStat(p)?.ppid === pid && alive(p));
}


/** Sends raw bytes on the daemon's socket and collects what comes back until the daemon closes it or `ms` pass. */
function rawExchange(socket: string, bytes: Buffer | string, ms = 1_000): Promise<{ answers: unknown[]; closedByDaemon: boolean }> {
  return new Promise((resolve) => {
    const s = connect(socket);
    const decoder = new FrameDecoder();
    const answers: unknown[] = [];
    let closedByDaemon = false;
    s.on('data', (c: Buffer) => {
      for (const body of decoder.push(c)) answers.push(JSON.parse(body.toString('utf8')));
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      closedByDaemon = true;
      resolve({ answers, closedByDaemon });
    });
    const timer = setTimeout(() => {
      s.removeAllListeners('close');
      s.destroy();
      resolve({ answers, closedByDaemon });
    }, ms);
    s.write(bytes);
  });
}

const frame = (msg: unknown): Buffer => encodeFrame(JSON.stringify(msg));

/** The hvplug executable as installed (package.json's bin): pause and resume go through the fast path first. */
const LAUNCHER = join(root, 'dist/cli/hvplug');

/** The other user of the --group tests: not the daemon's, in its group or not as a test needs. */
const NOBODY = 65534;

/** A group of /etc/group that is not root's own (nor the other user's), so that a socket given it shows the change. */
function otherGroup(): { name: string; gid: number } | undefined {
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name && gid && Number(gid) > 0 && Number(gid) !== NOBODY) return { name, gid: Number(gid) };
  }
  return undefined;
}

const GROUP_SKIP = process.getuid?.() !== 0 ? 'not root: only root can give the socket to a group it is not in' : !otherGroup() ? 'no group other than root in /etc/group' : undefined;
if (GROUP_SKIP) console.warn(`skipping hvplug daemon --group: ${GROUP_SKIP}`);
const SETPRIV = execaSync('setpriv', ['--version'], { reject: false }).exitCode === 0;
const OTHER_USER_SKIP = GROUP_SKIP ?? (SETPRIV ? undefined : 'no setpriv (util-linux), to run a command as another uid');

/** `argv` run as uid 65534: a member of the daemon's group (and no other), or of no group at all. */
function asOther(member: boolean, argv: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const groups = member ? ['--groups', String(otherGroup()!.gid)] : ['--clear-groups'];
  return execa('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), ...groups, ...argv], { reject: false, timeout: 60_000, env: { HVPLUG_CONFIG: '' } }).then(
    (r) => ({ exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) }),
  );
}

const cliAs = (member: boolean, d: Dirs, args: readonly string[]): ReturnType<typeof asOther> =>
  asOther(member, ['node', CLI, '--state-dir', d.state, '--runtime-dir', d.run, ...args]);

/** A unix socket connection: 'connected', or the errno it failed with. */
const CONNECT_PROBE = "require('net').connect(process.argv[1]).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(3); })";

describe('a daemon of another hvplug', () => {
  it('is refused with an error naming both daemon API versions, not misread', async () => {
    const { createServer } = await import('node:net');
    const d = await dirs();
    const socket = join(d.run, 'old-daemon.sock');
    // An hvplug of daemon API 1 as it answered hello: framed JSON-RPC on a unix socket, whatever is asked.
    const server = createServer((conn) => {
      let buf = Buffer.alloc(0);
      conn.on('error', () => undefined);
      conn.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        for (;;) {
          const head = buf.indexOf('\r\n\r\n');
          if (head < 0) return;
          const length = Number(/Content-Length: (\d+)/i.exec(buf.subarray(0, head).toString())?.[1]);
          if (buf.length < head + 4 + length) return;
          const msg = JSON.parse(buf.subarray(head + 4, head + 4 + length).toString()) as { id?: number };
          buf = buf.subarray(head + 4 + length);
          if (msg.id === undefined) continue;
          const body = JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { apiVersion: 1, pid: process.pid, stateDir: d.state, runtimeDir: d.run, socket, version: '0.0.9' } });
          conn.write(`Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      await writeDaemonLock(d.state, socket, 'old-daemon');
      for (const args of [['ps'], ['events']]) {
        const r = await cli(d, args);
        expect(r.exitCode, r.stderr).toBe(1);
        expect(r.stderr.trim()).toBe(
          `hvplug: the hvplug daemon (pid ${process.pid}, hvplug 0.0.9) speaks daemon API 1, this hvplug speaks daemon API 3: ` +
            'restart the daemon with this hvplug, or use the hvplug it came with',
        );
      }
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }, 60_000);
});

describe('hvplug daemon --group', () => {
  it.skipIf(GROUP_SKIP !== undefined)(`gives the socket to the group, mode 0660${GROUP_SKIP ? ` (skipped: ${GROUP_SKIP})` : ''}`, async () => {
    const group = otherGroup()!;
    const d = await dirs();
    const daemon = await startDaemon(d, ['--group', group.name]);
    const st = statSync(daemon.socket);
    expect(st.mode & 0o777).toBe(0o660);
    expect(st.gid).toBe(group.gid);
    // The daemon serves as before.
    expect(JSON.parse(await ok(d, ['ps', '--json']))).toEqual([]);
    expect(await stopDaemon(daemon)).toBe(0);
  }, 60_000);

  it.skipIf(OTHER_USER_SKIP !== undefined)(
    `lets another user in the group drive VMs through the socket, not a user outside it; neither reads the directories${OTHER_USER_SKIP ? ` (skipped: ${OTHER_USER_SKIP})` : ''}`,
    async (ctx) => {
      const group = otherGroup()!;
      const d = await dirs();
      const runs = await asOther(true, ['node', CLI, '--version']);
      if (runs.exitCode !== 0) ctx.skip(`uid ${NOBODY} cannot run ${CLI} (a checkout others cannot read?): ${runs.stderr}`);
      const daemon = await startDaemon(d, ['--group', group.name]);
      const id = (await ok(d, ['run', '--detach', '--plugin', PLUGIN, '--name', 'web'])).trim();
      const [owned] = await ps(d, guests);
      expect(owned).toMatchObject({ id, status: 'running' });

      // A member: the management API, all of it, through the socket.
      const listed = await cliAs(true, d, ['ps', '--json']);
      expect(listed.exitCode, listed.stderr).toBe(0);
      expect((JSON.parse(listed.stdout) as PsRow[]).map((r) => [r.id, r.status])).toEqual([[id, 'running']]);
      const paused = await cliAs(true, d, ['pause', 'web']);
      expect(paused.exitCode, paused.stderr).toBe(0);
      expect((await ps(d, guests))[0]).toMatchObject({ id, status: 'paused' });
      // Foreground run opens a host of its own, on a state directory only its owner may use: told so, and where to go.
      const foreground = await cliAs(true, d, ['run', '--plugin', PLUGIN, '--timeout', '5']);
      expect({ code: foreground.exitCode, out: foreground.stdout, err: foreground.stderr }).toEqual({
        code: 1,
        out: '',
        err:
          `hvplug: cannot use the state directory ${d.state}: it is ${userInfo().username}'s (uid ${process.getuid!()}); hvplug run without --detach ` +
          `runs a host of its own there (hvplug run --detach goes through its daemon)`,
      });

      // On the way to the socket and the daemon's lock, the group may pass, not look.
      for (const dir of [d.state, d.run]) {
        const st = statSync(dir);
        expect([dir, st.mode & 0o777, st.gid]).toEqual([dir, 0o710, group.gid]);
      }
      const lock = statSync(join(d.state, 'daemon.json'));
      expect([lock.mode & 0o777, lock.gid]).toEqual([0o640, group.gid]);
      // ... and nothing through the filesystem: no listing, no record, no plugin directory, no console log.
      const logs = await cliAs(true, d, ['logs', 'web']);
      expect(logs.exitCode).toBe(1);
      expect(logs.stderr).toMatch(/^hvplug: cannot read the console log \S+: permission denied \(hvplug reads the file itself/);
      // console follows the same log read-only: refused at once too, not a warning every poll until Ctrl-C.
      const console = await cliAs(true, d, ['console', 'web']);
      expect(console.exitCode).toBe(1);
      expect(console.stderr).toMatch(/^hvplug: cannot read the console log \S+: permission denied \(hvplug reads the file itself/m);
      const record = join(d.state, 'vms', `${id}.json`);
      expect(existsSync(record)).toBe(true);
      for (const argv of [['ls', d.state], ['ls', d.run], ['cat', record], ['ls', join(d.run, PLUGIN)]]) {
        const r = await asOther(true, argv);
        expect(r.exitCode, argv.join(' ')).not.toBe(0);
        expect(r.stderr, argv.join(' ')).toContain('Permission denied');
      }

      // Outside the group: refused, and told why; the socket refuses a direct connection too.
      const stranger = await cliAs(false, d, ['ps', '--json']);
      expect(stranger.exitCode).toBe(1);
      expect(stranger.stdout).toBe('');
      expect(stranger.stderr).toContain(`${join(d.state, 'daemon.json')}: permission denied`);
      for (const member of [false, true]) {
        const probe = await asOther(member, ['node', '-e', CONNECT_PROBE, daemon.socket]);
        expect(probe.stdout.trim()).toBe(member ? 'connected' : 'EACCES');
      }

      await ok(d, ['rm', '--force', 'web']);
      expect(await stopDaemon(daemon)).toBe(0);
      // Stopped, it leaves its directories as private as it found them.
      for (const dir of [d.state, d.run]) expect([dir, statSync(dir).mode & 0o777]).toEqual([dir, 0o700]);
    },
    120_000,
  );

  it.skipIf(OTHER_USER_SKIP !== undefined)(
    `with its daemon not running, tells a member plainly whose state directory it cannot read${OTHER_USER_SKIP ? ` (skipped: ${OTHER_USER_SKIP})` : ''}`,
    async (ctx) => {
      const group = otherGroup()!;
      const d = await dirs();
      const runs = await asOther(true, [LAUNCHER, '--version']);
      if (runs.exitCode !== 0) ctx.skip(`uid ${NOBODY} cannot run ${LAUNCHER} (a checkout others cannot read?): ${runs.stderr}`);
      const daemon = await startDaemon(d, ['--group', group.name]);
      const id = (await ok(d, ['run', '--detach', '--plugin', PLUGIN, '--name', 'web'])).trim();
      await ps(d, guests);
      // Killed, it cannot close up: the group may still pass the directories and read its lock, which names a dead
      // process. The member's commands find no daemon, and the state directory is not theirs to read.
      await stopDaemon(daemon, 'SIGKILL');
      expect(statSync(d.state).mode & 0o777).toBe(0o710);
      const owner = userInfo().username;
      for (const args of [['ps'], ['pause', 'web'], ['info', id], ['run', '--plugin', PLUGIN, '--timeout', '5']]) {
        const r = await asOther(true, [LAUNCHER, '--state-dir', d.state, '--runtime-dir', d.run, ...args]);
        expect({ args, code: r.exitCode, out: r.stdout, err: r.stderr }).toEqual({
          args,
          code: 1,
          out: '',
          err:
            `hvplug: cannot read the state directory ${d.state}: it is ${owner}'s (uid ${process.getuid!()}), and its daemon is not running ` +
            `(another user's VMs are reached through their daemon: hvplug daemon --group lets a group in)`,
        });
      }
      // Its owner's commands run their own host, as without a daemon.
      await ok(d, ['rm', '--force', 'web']);
    },
    120_000,
  );

  it.skipIf(GROUP_SKIP !== undefined)(
    `warns when a directory above the runtime directory keeps the group from the socket${GROUP_SKIP ? ` (skipped: ${GROUP_SKIP})` : ''}`,
    async () => {
      const group = otherGroup()!;
      const closed = await tempDir('hvplug-daemon-closed-');
      const d = { state: await tempDir('hvplug-daemon-state-'), run: join(closed, 'run') };
      const daemon = await startDaemon(d, ['--group', group.name]);
      expect(daemon.logged('the socket group cannot reach the socket')).toEqual([
        expect.objectContaining({ group: group.gid, dir: closed, mode: '0700' }),
      ]);
      expect(await stopDaemon(daemon)).toBe(0);
    },
    60_000,
  );

  it('an unknown group is a usage error, before anything starts', async () => {
    const d = await dirs();
    const r = await cli(d, ['daemon', '--group', 'no-such-group-hvplug']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim()).toBe('hvplug daemon: --group: no group named "no-such-group-hvplug" on this system (see: hvplug daemon --help)');
    expect(r.stdout).toBe('');
  });
});

describe('hvplug daemon', () => {
  it('serves run --detach, ps, pause, resume, info and stop from separate processes without restarting the plugin or re-attaching', async () => {
    const d = await dirs();
    const daemon = await startDaemon(d);
    expect(statSync(daemon.socket).mode & 0o777).toBe(0o600);

    const id = (await ok(d, ['run', '--detach', '--plugin', PLUGIN, '--name', 'web'])).trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const plugins = childrenOf(daemon.pid);
    expect(plugins).toHaveLength(1);
    const [row] = await ps(d, guests);
    expect(row).toMatchObject({ id, name: 'web', status: 'running' });
    expect(row?.owner).toBeUndefined();
    const guest = row!.pid!;

    expect((await ok(d, ['pause', 'web'])).trim()).toBe(id);
    expect((await ps(d, guests))[0]).toMatchObject({ status: 'paused', pid: guest });
    expect(JSON.parse(await ok(d, ['resume', id.slice(0, 8), '--json']))).toMatchObject({ id, status: 'running' });
    expect(JSON.parse(await ok(d, ['info', 'web', '--json']))).toMatchObject({ id, status: 'running', pid: guest, plugin: PLUGIN });

    // The same plugin process served every command, and the daemon never had to re-attach the VM it created.
    expect(childrenOf(daemon.pid)).toEqual(plugins);
    expect(daemon.logged('plugin started')).toHaveLength(1);
    expect(daemon.logged('re-attached VM')).toEqual([]);
    // Nothing but the daemon holds the VM: a command with its own host would have leased it.
    expect(await readdir(join(d.state, 'owners'))).toEqual([`${id}.json`]);

    expect(JSON.parse(await ok(d, ['stop', 'web', '--json']))).toMatchObject({ id, deleted: true });
    await eventually(() => !alive(guest), 10_000, 'the guest to end');
    expect(await ps(d, guests)).toEqual([]);
    expect(childrenOf(daemon.pid)).toEqual(plugins);
  }, 90_000);

  it('refuses a second daemon on the same state directory, naming the first', async () => {
    const d = await dirs();
    const first = await startDaemon(d);
    const second = await cli(d, ['daemon']);
    expect(second.exitCode).toBe(1);
    expect(second.stderr).toContain(`a daemon already serves the state directory ${d.state}: pid ${first.pid}`);
    // The first goes on serving.
    expect(await ps(d, guests)).toEqual([]);
    expect(alive(first.pid)).toBe(true);
  }, 60_000);

  it('serves clients at once: a ps and an info never disturb a pause and a resume of another VM', async () => {
    const d = await dirs();
    const daemon = await startDaemon(d);
    const a = (await ok(d, ['run', '--detach', '--plugin', PLUGIN, '--name', 'alpha'])).trim();
    const b = (await ok(d, ['run', '--detach', '--plugin', PLUGIN, '--name', 'beta'])).trim();
    const results = await Promise.all([
      cli(d, ['pause', 'alpha']),
      cli(d, ['ps', '--json']),
      cli(d, ['info', 'beta', '--json']),
      cli(d, ['ps', '-q']),
    ]);
    for (const r of results) expect(r.exitCode, r.stderr).toBe(0);
    expect((JSON.parse(results[2]!.stdout) as PsRow).status).toBe('running');
    const after = await Promise.all([cli(d, ['resume', 'alpha']), cli(d, ['pause', 'beta']), cli(d, ['ps', '--json'])]);
    for (const r of after) expect(r.exitCode, r.stderr).toBe(0);
    const rows = await ps(d, guests);
    expect(rows.find((r) => r.id === a)).toMatchObject({ status: 'running' });
    expect(rows.find((r) => r.id === b)).toMatchObject({ status: 'paused' });
    expect(daemon.logged('plugin started')).toHaveLength(1);
    await ok(d, ['rm', '--force', 'alpha']);
    await ok(d, ['rm', '--force', 'beta']);
  }, 90_000);

  it('drops a client that sends garbage, an over-size message or a bad request, and serves the others', async () => {
    const d = await dirs();
    const daemon = await startDaemon(d);
    const id = (await ok(d, ['run', '--detach', '--plugin', PLUGIN])).trim();

    // Not framing at all.
    expect((await rawExchange(daemon.socket, 'hello daemon\r\n\r\n')).closedByDaemon).toBe(true);
    // A header announcing more than the daemon takes: refused before any body is buffered.
    expect((await rawExchange(daemon.socket, 'Content-Length: 999999999\r\n\r\n')).closedByDaemon).toBe(true);
    // Framed JSON that is no request.
    expect((await rawExchange(daemon.socket, frame([1, 2, 3]))).closedByDaemon).toBe(true);

    // A request whose params are wrong is answered with an error; the connection stays.
    const bad = await rawExchange(daemon.socket, frame({ jsonrpc: '2.0', id: 1, method: 'vm/pause', params: { vmId: 42 } }), 1_500);
    expect(bad.closedByDaemon).toBe(false);
    expect(bad.answers).toEqual([expect.objectContaining({ id: 1, error: expect.objectContaining({ code: expect.any(Number) }) })]);
    const unknown = await rawExchange(daemon.socket, frame({ jsonrpc: '2.0', id: 2, method: 'initialize', params: {} }), 1_500);
    expect(unknown.answers).toEqual([expect.objectContaining({ id: 2, error: expect.objectContaining({ code: -32601 }) })]);

    // A client that asks and leaves before the answer.
    const s = connect(daemon.socket);
    s.on('error', () => undefined);
    s.write(frame({ jsonrpc: '2.0', id: 3, method: 'vm/info', params: { vmId: id } }));
    s.destroy();

    expect(alive(daemon.pid)).toBe(true);
    expect((await ps(d, guests)).map((r) => [r.id, r.status])).toEqual([[id, 'running']]);
    await ok(d, ['pause', id]);
    await ok(d, ['stop', '--force', id]);
    expect(daemon.logged('plugin started')).toHaveLength(1);
  }, 90_000);

  it('leaves VMs running on SIGTERM; a new daemon re-attaches them, and without one the commands run their own host', async () => {
    const d = await dirs();
    const first = await startDaemon(d);
    const id = (await ok(d, ['run', '--detach', '--plugin', PLUGIN, '--name', 'keep'])).trim();
    const guest = (await ps(d, guests))[0]!.pid!;

    expect(await stopDaemon(first)).toBe(0);
    expect(first.out()).toContain('SIGTERM: shutting down; VMs keep running');
    expect(alive(guest)).toBe(true);
    expect(childrenOf(first.pid)).toEqual([]);

    const second = await startDaemon(d);
    expect(second.out()).toContain('ready (1 re-attached, 0 lost)');
    expect(second.logged('re-attached VM').map((l) => l.vmId)).toEqual([id]);
    expect((await ps(d, guests))[0]).toMatchObject({ id, status: 'running', pid: guest });
    await ok(d, ['pause', 'keep']);
    expect(second.logged('re-attached VM')).toHaveLength(1);

    // A daemon killed outright leaves its lock behind: the commands see it is dead and run their own host.
    const orphans = childrenOf(second.pid);
    expect(await stopDaemon(second, 'SIGKILL')).not.toBe(0);
    // Its plugin sees its stdin end and exits.
    await eventually(() => orphans.every((p) => !alive(p)), 10_000, 'the killed daemon\'s plugin to go');
    expect((await ps(d, guests))[0]).toMatchObject({ id, status: 'paused', pid: guest });
    await ok(d, ['resume', 'keep']);

    // And a new daemon takes the state directory over from the dead one.
    const third = await startDaemon(d);
    expect(third.out()).toContain('ready (1 re-attached, 0 lost)');
    await ok(d, ['stop', 'keep']);
    await eventually(() => !alive(guest), 10_000, 'the guest to end');
  }, 120_000);
  it('serves hvplug/callRef: the reference resolved as the CLI resolves it and the call made, in one answer; what the CLI would do otherwise declined, undone', async () => {
    const d = await dirs();
    const daemon = await startDaemon(d);
    const id = (await ok(d, ['run', '--detach', '--plugin', PLUGIN, '--name', 'byref'])).trim();
    await ps(d);
    const callRef = (n: number, params: object) => frame({ jsonrpc: '2.0', id: n, method: DAEMON_METHODS.callRef.name, params });
    const declined = (n: number, why: string, message: RegExp) =>
      expect.objectContaining({ id: n, error: { code: CALL_REF_DECLINED_CODE, message: expect.stringMatching(message), data: { declined: why } } });
    const byId = (answers: unknown[]) => [...answers].sort((a, b) => (a as { id: number }).id - (b as { id: number }).id);
    const first = await rawExchange(
      daemon.socket,
      Buffer.concat([
        callRef(1, { apiVersion: API_VERSION, ref: 'byref', method: 'vm/pause' }),
        callRef(2, { apiVersion: API_VERSION + 1, ref: 'byref', method: 'vm/resume' }),
        callRef(3, { apiVersion: API_VERSION, ref: 'nosuch', method: 'vm/resume' }),
        callRef(4, { apiVersion: API_VERSION, ref: id.slice(0, 3), method: 'vm/resume' }),
        callRef(5, { apiVersion: API_VERSION, ref: 'byref', method: 'vm/migrate' }),
      ]),
      5_000,
    );
    expect(byId(first.answers)).toEqual([
      { jsonrpc: '2.0', id: 1, result: { vmId: id, result: expect.objectContaining({ status: 'paused' }) } },
      declined(2, 'apiVersion', /API version/),
      declined(3, 'ref', /^declined: no VM "nosuch" \(id, name or id prefix\) in the state directory /),
      declined(4, 'ref', /an id prefix needs at least 4 characters/),
      declined(5, 'ref', /params this daemon does not take/),
    ]);
    // Only the call that was made changed anything.
    expect((await ps(d)).find((r) => r.id === id)?.status).toBe('paused');
    const second = await rawExchange(daemon.socket, callRef(6, { apiVersion: API_VERSION, ref: id.slice(0, 8), method: 'vm/resume' }), 3_000);
    expect(second.answers).toEqual([{ jsonrpc: '2.0', id: 6, result: { vmId: id, result: expect.objectContaining({ status: 'running' }) } }]);
    // The call's own refusal is its answer, as a raw call's: not a decline.
    const third = await rawExchange(daemon.socket, callRef(7, { apiVersion: API_VERSION, ref: id, method: 'vm/resume' }), 3_000);
    expect(third.answers).toEqual([
      { jsonrpc: '2.0', id: 7, error: { code: -31003, message: `vm/resume: VM ${id} is running; this needs paused`, data: { hvplug: 'InvalidState' } } },
    ]);
    await ok(d, ['rm', '-f', id]);
  }, 90_000);

  it('answers hvplug/console on a connection of its own, naming a log console; with another call on the connection it refuses', async () => {
    const d = await dirs();
    const daemon = await startDaemon(d);
    const id = (await ok(d, ['run', '--detach', '--plugin', PLUGIN, '--name', 'logged'])).trim();
    await ps(d, guests);
    const alone = await rawExchange(daemon.socket, frame({ jsonrpc: '2.0', id: 1, method: 'hvplug/console', params: { vmId: id } }), 5_000);
    expect(alone.answers).toEqual([{ jsonrpc: '2.0', id: 1, result: { kind: 'log', path: expect.stringContaining(id), joined: false } }]);
    // Subscribed first, the connection carries events: it cannot become a console's.
    const shared = await rawExchange(
      daemon.socket,
      Buffer.concat([
        frame({ jsonrpc: '2.0', id: 1, method: 'hvplug/subscribe', params: {} }),
        frame({ jsonrpc: '2.0', id: 2, method: 'hvplug/console', params: { vmId: id } }),
      ]),
      5_000,
    );
    expect(shared.answers).toContainEqual(
      expect.objectContaining({ id: 2, error: expect.objectContaining({ message: expect.stringContaining("it must be the connection's only call") }) }),
    );
    await ok(d, ['rm', '-f', id]);
  }, 90_000);
});
