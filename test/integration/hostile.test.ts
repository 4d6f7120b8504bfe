import { readFileSync, readdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { NotSupportedError, PluginHost, ProtocolError, ProtocolVersionError, ProtocolViolationError } from 'hvplug';
import { root } from '../../scripts/bundle.mjs';
import { alive, eventually, fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

afterEach(removeTempDirs);

/** Live processes in process group `pgid`. */
function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the command name: state ppid pgrp ...
      const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ');
      if (Number(fields[2]) === pgid && alive(Number(entry))) out.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return out;
}

/** Live processes whose environment holds `entry` (NAME=value). */
function marked(entry: string): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((pid) => {
      try {
        return alive(pid) && readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(entry);
      } catch {
        return false;
      }
    });
}

interface Report {
  goodCalls: number;
  goodFailures: string[];
  goodUnhealthy: number;
  badPids: number[];
  badCalls: { what: string; ok?: boolean; error?: string; message?: string }[];
  maxRssMiB: number;
  exited: string[];
}

/** The host's RSS bound beside any hostile plugin: node itself, two plugins' pipes and the caps on what they send. */
const MAX_HOST_RSS_MIB = 256;

/**
 * Runs a host process with a well-behaved plugin beside one misbehaving as `hostile` says, and checks what every
 * scenario must leave true: the host alive to the end, the good plugin's calls all answered in their deadline and
 * none of its health pings missed, the host's RSS bounded, and no process of the bad plugin left afterwards.
 */
async function beside(hostile: string, scenario: string, durationMs = 1_500, extra: { env?: Record<string, string>; logLevel?: string } = {}): Promise<Report> {
  const dir = await tempDir();
  const opts = {
    ...extra,
    core: new URL('../../dist/src/core/index.js', import.meta.url).href,
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    good: fixture('probe'),
    bad: fixture('hostile'),
    hostile,
    runId: randomUUID(),
    scenario,
    durationMs,
  };
  // The host's stderr to a file: a host logging a plugin's flood must not be measured by what a pipe buffers.
  const stderr = join(dir, 'host-stderr.log');
  const r = await execa(process.execPath, [join(root, 'test/fixtures/hosts/beside.mjs'), JSON.stringify(opts)], {
    reject: false,
    timeout: durationMs + 20_000,
    stderr: { file: stderr },
  });
  const tail = async (): Promise<string> => (await readFile(stderr, 'utf8').catch(() => '')).slice(-2_000);
  expect(r.exitCode, `host process died: ${await tail()}`).toBe(0);
  const report = JSON.parse(r.stdout.trim().split('\n').pop()!) as Report;
  expect(report.goodFailures).toEqual([]);
  expect(report.goodCalls).toBeGreaterThan(0);
  expect(report.goodUnhealthy).toBe(0);
  expect(report.maxRssMiB).toBeLessThan(MAX_HOST_RSS_MIB);
  if (scenario !== 'handshake') expect(report.badPids.length).toBeGreaterThan(0);
  await eventually(
    () => report.badPids.every((pid) => !alive(pid) && groupMembers(pid).length === 0) && marked(`HOSTILE_RUN=${opts.runId}`).length === 0,
    5_000,
    'no process of the bad plugin left',
  );
  return report;
}

describe('the host survives a hostile plugin', () => {
  it('one that closes its stdout and stays alive is treated as failed, killed and restarted', async () => {
    const report = await beside('close-stdout', 'restarted');
    // Restarted at least once: each start closes its stdout again.
    expect(report.badPids.length).toBeGreaterThan(1);
    expect(report.exited.length).toBeGreaterThan(0);
  });

  it('one that closes its stdout in the middle of a call fails that call with a typed error at once', async () => {
    const report = await beside('close-stdout-mid-call', 'create');
    expect(report.badCalls).toEqual([expect.objectContaining({ what: 'createVm', error: 'ProtocolError', message: expect.stringMatching(/closed its stdout/) })]);
  });
});

describe('answers that are not answers', () => {
  const hosts: PluginHost[] = [];
  afterEach(async () => {
    await Promise.all(hosts.splice(0).map((h) => h.close()));
  });

  async function hostile(mode: string, env: Record<string, string> = {}): Promise<PluginHost> {
    const dir = await tempDir();
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      logger: memoryLogger().logger,
      plugins: [{ name: 'bad', command: fixture('hostile'), env: { ...env, HOSTILE: mode } }],
      supervision: { healthIntervalMs: 0 },
    });
    hosts.push(host);
    return host;
  }

  it('an answer with neither result nor error, or with both, is a ProtocolError naming the method', async () => {
    for (const [mode, what] of [
      ['neither', /vm\/create with neither a result nor an error/],
      ['both', /vm\/create with both a result and an error/],
    ] as const) {
      const hv = await (await hostile(mode)).hypervisor('bad');
      const err = await hv.createVm({ config: {} }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as Error).message).toMatch(what);
    }
  });

  it('a protocol version newer than any the host offered is refused', async () => {
    const err = await (await hostile('version-1.9')).hypervisor('bad').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolVersionError);
    expect((err as Error).message).toMatch(/1\.9\.0/);
  });

  it('a plugin that chose protocol 1.0.0 is never sent a method of a later version it advertises, and is told why', async () => {
    const hv = await (await hostile('claims-1.1-methods')).hypervisor('bad');
    expect(hv.info.protocolVersion).toBe('1.0.0');
    expect(hv.info.capabilities.methods).not.toContain('vm/receiveMigration');
    expect(hv.info.capabilities.methods).not.toContain('vm/migrate');
    const err = await hv.invoke('vm/receiveMigration', { vmId: randomUUID(), config: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotSupportedError);
    expect((err as Error).message).toMatch(/vm\/receiveMigration came in protocol 1\.1\.0; the plugin speaks 1\.0\.0/);
  });

  it('an answer whose every list item is wrong is a typed error of bounded size, under the cap and over it', async () => {
    for (const [n, type, what] of [
      [9_000, ProtocolViolationError, /^plugin answered vm\/pids with a malformed result: pids\.0: .*; … and 8,990 more$/],
      [200_000, ProtocolError, /holds over 10,000 values/],
    ] as const) {
      const host = await hostile('bad-items', { HOSTILE_ITEMS: String(n) });
      const hv = await host.hypervisor('bad');
      const err = await hv.invoke('vm/pids', { vmId: randomUUID() }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(type);
      expect((err as Error).message).toMatch(what);
      expect((err as Error).message.length).toBeLessThan(2_000);
    }
  });

  it('calls that time out unanswered leave nothing behind', async () => {
    const host = await hostile('silent-calls');
    const hv = await host.hypervisor('bad');
    const client = (await host.client('bad'))!;
    const gc = globalThis.gc ?? (setFlagsFromString('--expose-gc'), runInNewContext('gc') as () => void);
    const batch = (): Promise<unknown> =>
      Promise.all(Array.from({ length: 1_000 }, () => client.call('vm/create', { vmId: 'x', config: {} }, { timeoutMs: 1 }).catch(() => undefined)));
    await batch();
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 20; i++) await batch();
    await new Promise((r) => setTimeout(r, 50));
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    // 20,000 leaked calls cost ~37 MiB; what is left over must be noise.
    expect(grown).toBeLessThan(4 * 2 ** 20);
    expect(hv.info.plugin.name).toBe('hostile');
  });
});

describe('close() leaves nothing of a plugin', () => {
  async function hostWith(mode: string, env: Record<string, string> = {}, supervision = {}): Promise<{ host: PluginHost; dir: string }> {
    const dir = await tempDir();
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      logger: memoryLogger().logger,
      plugins: [{ name: 'bad', command: fixture('hostile'), env: { HOSTILE: mode, ...env } }],
      supervision: { healthIntervalMs: 0, ...supervision },
    });
    return { host, dir };
  }

  it('kills the process group of a plugin that exits on its own within the grace period', async () => {
    const { host } = await hostWith('group-child');
    await host.hypervisor('bad');
    const pid = (await host.client('bad'))!.pid;
    await eventually(() => groupMembers(pid).length === 2, 5_000, 'the plugin and its helper');
    await host.close();
    await eventually(() => groupMembers(pid).length === 0, 2_000, 'no process of the plugin group');
  });

  it('a helper holding the plugin pipes does not keep the host process from exiting', async () => {
    const dir = await tempDir();
    const pidfile = join(dir, 'holder.pid');
    const script = join(dir, 'host.mjs');
    const coreUrl = new URL('../../dist/src/core/index.js', import.meta.url).href;
    await writeFile(
      script,
      `import { PluginHost } from ${JSON.stringify(coreUrl)};
const host = new PluginHost({ stateDir: ${JSON.stringify(dir)}, runtimeDir: ${JSON.stringify(dir)}, logLevel: 'silent',
  plugins: [{ name: 'bad', command: ${JSON.stringify(fixture('hostile'))}, env: { HOSTILE: 'pipe-holder', HOSTILE_PIDFILE: ${JSON.stringify(pidfile)} } }] });
await host.hypervisor('bad');
await host.close();
console.log('closed');
`,
    );
    try {
      const r = await execa(process.execPath, [script], { reject: false, timeout: 15_000 });
      expect(r.stdout).toBe('closed');
      expect(r.timedOut).toBe(false);
      expect(r.exitCode).toBe(0);
    } finally {
      const holder = Number(await readFile(pidfile, 'utf8').catch(() => '0'));
      if (holder > 0 && alive(holder)) process.kill(holder, 'SIGKILL');
    }
  });

  it('close() during a restart leaves no new plugin process behind', async () => {
    const { host } = await hostWith('', { HOSTILE_INIT_DELAY_MS: '600' }, { backoffMs: 10 });
    await host.hypervisor('bad');
    const first = (await host.client('bad'))!.pid;
    const slowHostiles = (): number[] =>
      readdirSync('/proc')
        .filter((e) => /^\d+$/.test(e))
        .map(Number)
        .filter((p) => {
          try {
            return alive(p) && readFileSync(`/proc/${p}/environ`, 'utf8').includes('HOSTILE_INIT_DELAY_MS=600');
          } catch {
            return false;
          }
        });
    const exited = new Promise((r) => host.once('plugin-exited', r));
    process.kill(first, 'SIGKILL');
    await exited;
    // The new process is spawned and waits in its handshake while the host closes.
    await eventually(() => slowHostiles().some((p) => p !== first), 2_000, 'the restart to spawn');
    await host.close();
    expect(slowHostiles()).toEqual([]);
  });
});

describe('beside a well-behaved plugin, each misbehaviour leaves the host and the good plugin untouched', () => {
  it.each([
    ['never answers a call', 'silent-calls', 'create', 'TimeoutError'],
    ['answers with neither result nor error', 'neither', 'create', 'ProtocolError'],
    ['answers with both', 'both', 'create', 'ProtocolError'],
    ['leaves a helper in its group', 'group-child', 'create', undefined],
  ])('one that %s', async (_what, mode, scenario, error) => {
    const report = await beside(mode, scenario);
    if (error) expect(report.badCalls[0]?.error).toBe(error);
  });

  it('one that is deaf to everything, the handshake included', async () => {
    const report = await beside('deaf', 'handshake', 500);
    expect(report.badCalls[0]?.error).toBe('TimeoutError');
  }, 40_000);

  it('one that picks a protocol version the host never offered', async () => {
    const report = await beside('version-1.9', 'handshake', 500);
    expect(report.badCalls[0]?.error).toBe('ProtocolVersionError');
  });
});

describe('floods', () => {
  it('a flood of status-changing events is cut off with a typed error; calls keep their deadline, memory stays bounded', async () => {
    const report = (await beside('event-flood', 'start', 3_000)) as Report & { startMs: number };
    expect(report.startMs).toBeLessThan(3_000 + 1_000);
    expect(report.exited).toContain('ProtocolError');
  });

  it('an endless stderr line costs the host neither its pings nor its memory', async () => {
    await beside('stderr-flood', 'idle', 3_000);
  });

  it('a flood of short stderr lines costs the host neither its pings nor its memory, logged at the default level', async () => {
    await beside('stderr-lines', 'idle', 8_000, { logLevel: 'warn' });
  });

  it('a flood of fatal pino lines does not make the host flush its log synchronously for each', async () => {
    await beside('stderr-lines', 'idle', 3_000, { logLevel: 'error', env: { HOSTILE_LINE: '{"level":60,"msg":"boom"}' } });
  });

  it('an initialize answer of millions of bad list items is refused at once, the good plugin untouched', async () => {
    const report = await beside('many-methods', 'handshake', 1_000);
    expect(report.badCalls[0]).toMatchObject({ error: 'ProtocolError', message: expect.stringMatching(/over 10,000 values/) });
  });

  it('requests to the host whose answers the plugin never reads are cut off', async () => {
    const report = await beside('request-flood', 'idle', 3_000);
    // Killed either way: for what waits unread in its stdin, or for the health pings it no longer reads.
    expect(report.exited.length).toBeGreaterThan(0);
  });
});

describe('events a plugin may not send', () => {
  const hosts: PluginHost[] = [];
  afterEach(async () => {
    await Promise.all(hosts.splice(0).map((h) => h.close()));
  });

  /** A host with the hostile plugin as `bad` (in `mode`), and a conformant one as `good` when asked. */
  async function hostile(mode: string, isolation: 'shared' | 'per-vm' = 'shared', withGood = false): Promise<{ host: PluginHost; lines: () => Record<string, unknown>[] }> {
    const dir = await tempDir();
    const { logger, lines } = memoryLogger();
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      logger,
      plugins: [
        ...(withGood ? [{ name: 'good', command: fixture('hostile'), env: { HOSTILE: '' } }] : []),
        { name: 'bad', command: fixture('hostile'), env: { HOSTILE: mode }, isolation },
      ],
      supervision: { healthIntervalMs: 0 },
    });
    hosts.push(host);
    return { host, lines };
  }

  it('an event older than the last applied one for its VM is dropped and logged', async () => {
    const { host, lines } = await hostile('stale-events');
    const vm = await (await host.hypervisor('bad')).createVm({ config: {} });
    const seen: string[] = [];
    vm.on('event', (e) => seen.push(`${e.type}:${e.seq}`));
    await vm.start();
    await eventually(() => vm.status === 'stopped', 2_000, `the stopped event (seen: ${seen.join(' ')}, status ${vm.status})`);
    await new Promise((r) => setTimeout(r, 200));
    expect(vm.status).toBe('stopped');
    expect(seen).toEqual(['stopped:6']);
    await eventually(async () => (await host.records()).records[0]?.status === 'stopped', 2_000, 'the record to say stopped');
    expect(lines().filter((l) => String(l.err).includes('stale event'))).toHaveLength(2);
  });

  it('an event read after a call answer is not overridden by the status the answer carries', async () => {
    const { host } = await hostile('event-after-answer');
    const vm = await (await host.hypervisor('bad')).createVm({ config: {} });
    await vm.start();
    expect(vm.status).toBe('stopped');
    expect((await host.records()).records[0]?.status).toBe('stopped');
  });

  it("a plugin's events for a VM it does not have (another plugin's) reach nobody, and are logged", async () => {
    const { host, lines } = await hostile('forge', 'shared', true);
    const good = await host.hypervisor('good');
    const bad = await host.hypervisor('bad');
    const victim = await good.createVm({ vmId: 'victim', config: {} });
    await victim.start();
    // The bad plugin's listeners are where its events go (the daemon's event hub is one); the good plugin's own
    // running event for its VM may come after its start answered, and is no forgery.
    const heard: string[] = [];
    bad.onEvent((e) => heard.push(`${e.vmId}:${e.type}`));
    await (await bad.createVm({ vmId: 'attacker', config: {} })).start();
    await new Promise((r) => setTimeout(r, 300));
    expect(heard.filter((h) => h.startsWith('victim:'))).toEqual([]);
    expect(victim.status).toBe('running');
    expect(lines().some((l) => String(l.err ?? l.msg).includes('event for a VM it does not have'))).toBe(true);
  });

  it('under per-vm isolation a process cannot change another VM with forged events', async () => {
    const { host, lines } = await hostile('forge', 'per-vm');
    const hv = await host.hypervisor('bad');
    const victim = await hv.createVm({ vmId: 'victim', config: {} });
    await victim.start();
    const attacker = await hv.createVm({ vmId: 'attacker', config: {} });
    // The victim's own process forges events for it too (its id is its own): only the attacker's must be dropped.
    const before = { status: victim.status, state: victim.state };
    await attacker.start();
    await new Promise((r) => setTimeout(r, 300));
    expect({ status: victim.status, state: victim.state }).toEqual(before);
    const record = (await host.records()).records.find((r) => r.vmId === 'victim');
    expect(record?.state).toEqual(before.state);
    expect(lines().some((l) => String(l.msg).includes('event for a VM it does not serve'))).toBe(true);
  });
});
