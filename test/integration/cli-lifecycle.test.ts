import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PluginHost } from 'hvplug';
import { alive, CLI, ensureCliBuilt, eventually, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

/**
 * The virsh/ctr-like command set through the built CLI: each command its own process, so a VM's name, its
 * record and its running guest are all a later command has to go on.
 */
const PLUGIN = 'example-proprietary';

interface PsRow {
  id: string;
  name?: string;
  plugin: string;
  status: string;
  pid?: number;
}

let stateDir: string;
let runtimeDir: string;
let work: string;
const guests = new Set<number>();

beforeAll(async () => {
  await ensureCliBuilt();
  stateDir = await tempDir('hvplug-cli-life-state-');
  runtimeDir = await tempDir('hvplug-cli-life-run-');
  work = await tempDir('hvplug-cli-life-work-');
}, 120_000);

afterAll(async () => {
  for (const pid of guests) {
    try {
      if (alive(pid)) process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  await removeTempDirs();
});

async function cli(args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa('node', [CLI, '--state-dir', stateDir, '--runtime-dir', runtimeDir, ...args], {
    reject: false,
    timeout: 60_000,
    env: { HVPLUG_CONFIG: '' },
  });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function ok(args: readonly string[]): Promise<string> {
  const r = await cli(args);
  expect(r.exitCode, `hvplug ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

async function ps(...args: string[]): Promise<PsRow[]> {
  const rows = JSON.parse(await ok(['ps', '--json', ...args])) as PsRow[];
  for (const row of rows) if (row.pid !== undefined) guests.add(row.pid);
  return rows;
}

async function rowOf(id: string): Promise<PsRow | undefined> {
  return (await ps()).find((r) => r.id === id);
}

describe('create, start, kill, rm', () => {
  it('create leaves a created VM; start boots it; kill forces it off and keeps it; rm deletes it', async () => {
    const id = (await ok(['create', '--plugin', PLUGIN, '--name', 'web'])).trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await rowOf(id)).toMatchObject({ id, name: 'web', status: 'created' });

    expect((await ok(['start', 'web'])).trim()).toBe(id);
    const running = await rowOf(id);
    expect(running).toMatchObject({ status: 'running' });
    const pid = running!.pid!;
    expect(alive(pid)).toBe(true);

    const refused = await cli(['rm', 'web']);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/running.*--force/);
    expect(alive(pid)).toBe(true);

    expect(JSON.parse(await ok(['kill', 'web', '--json']))).toMatchObject({ id, status: 'stopped' });
    await eventually(() => !alive(pid), 5_000, `guest ${pid} to die`);
    expect(await rowOf(id)).toMatchObject({ status: 'stopped' });

    // A stopped VM starts again: stop --keep and kill no longer leave a VM nothing can start.
    await ok(['start', id]);
    const again = await rowOf(id);
    expect(again).toMatchObject({ status: 'running' });
    guests.add(again!.pid!);
    await ok(['kill', id]);

    expect(JSON.parse(await ok(['rm', 'web', '--json']))).toMatchObject({ id, deleted: true });
    expect(await rowOf(id)).toBeUndefined();
  }, 60_000);

  it('rm --force stops a running VM first', async () => {
    const id = (await ok(['run', '--detach', '--plugin', PLUGIN, '--name', 'doomed'])).trim();
    const pid = (await rowOf(id))!.pid!;
    await ok(['rm', '--force', 'doomed']);
    await eventually(() => !alive(pid), 5_000, `guest ${pid} to die`);
    expect(await rowOf(id)).toBeUndefined();
  }, 60_000);

  it('rm --force removes a record whose plugin is gone, and says so', async () => {
    const dir = await tempDir();
    const toml = join(dir, 'plugins.toml');
    await writeFile(toml, `[plugins.acme]\ncommand = "${pluginExecutable(PLUGIN)}"\n`);
    const id = (await ok(['--config', toml, 'create', '--plugin', 'acme', '--name', 'orphan'])).trim();
    // The record remembers the config file; with the plugin's table gone from it, nothing can find the plugin.
    await writeFile(toml, '');
    const plain = await cli(['rm', 'orphan']);
    expect(plain.exitCode).toBe(1);
    expect(plain.stderr).toContain('acme');
    expect(plain.stderr).toContain('--force');
    const forced = await cli(['rm', '--force', 'orphan']);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(forced.stdout).toMatch(/record.*removed.*plugin acme/i);
    expect(existsSync(join(stateDir, 'vms', `${id}.json`))).toBe(false);
  }, 60_000);
});

describe('names and id prefixes', () => {
  it("names the name's holder, not a create that is losing it (whose record is there for a moment before its claim fails)", async () => {
    const holder = (await ok(['create', '--plugin', PLUGIN, '--name', 'held'])).trim();
    // What a losing create leaves for a moment: a record with the name, written before its claim of the name fails.
    const loser = '00000000-0000-4000-8000-000000000000';
    const record = JSON.parse(await readFile(join(stateDir, 'vms', `${holder}.json`), 'utf8')) as { vmId: string };
    await writeFile(join(stateDir, 'vms', `${loser}.json`), JSON.stringify({ ...record, vmId: loser }), { mode: 0o600 });
    try {
      const r = await cli(['create', '--plugin', PLUGIN, '--name', 'held']);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(holder);
      expect(r.stderr).not.toContain(loser);
    } finally {
      await rm(join(stateDir, 'vms', `${loser}.json`), { force: true });
      await ok(['rm', holder]);
    }
  }, 60_000);

  it('one name, four creates at once from four processes: exactly one gets it, the others are told who has it', async () => {
    const results = await Promise.all([0, 1, 2, 3].map(() => cli(['create', '--plugin', PLUGIN, '--name', 'raced'])));
    const won = results.filter((r) => r.exitCode === 0);
    expect(won, results.map((r) => `${r.exitCode}: ${r.stderr}`).join('\n')).toHaveLength(1);
    const id = won[0]!.stdout.trim();
    for (const r of results.filter((x) => x.exitCode !== 0)) {
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain('"raced"');
      expect(r.stderr).toContain(id);
    }
    expect((await ps()).filter((r) => r.name === 'raced').map((r) => r.id)).toEqual([id]);
    await ok(['rm', id]);
    // The name is free again once its VM is gone.
    const again = (await ok(['create', '--plugin', PLUGIN, '--name', 'raced'])).trim();
    await ok(['rm', again]);
  }, 90_000);

  it('a taken name is refused naming the VM that has it; ids, prefixes and names all find a VM', async () => {
    const id = (await ok(['create', '--plugin', PLUGIN, '--name', 'db'])).trim();
    const dup = await cli(['create', '--plugin', PLUGIN, '--name', 'db']);
    expect(dup.exitCode).toBe(1);
    expect(dup.stderr).toContain('"db"');
    expect(dup.stderr).toContain(id);

    expect((await ok(['info', id, '--json'])).length).toBeGreaterThan(0);
    expect(JSON.parse(await ok(['info', id.slice(0, 8), '--json']))).toMatchObject({ id, name: 'db', plugin: PLUGIN, status: 'created' });
    expect(JSON.parse(await ok(['info', 'db', '--json']))).toMatchObject({ id });

    const short = await cli(['info', id.slice(0, 3)]);
    expect(short.exitCode).toBe(1);
    expect(short.stderr).toContain('4');

    await ok(['rm', 'db']);
  }, 60_000);

  it('an ambiguous prefix is an error listing the candidates', async () => {
    // Ids that share a prefix, given through the library (the CLI makes random ones).
    const a = 'abcd1111-0000-4000-8000-000000000001';
    const b = 'abcd2222-0000-4000-8000-000000000002';
    const host = new PluginHost({ stateDir, runtimeDir, configFile: '', logLevel: 'silent' });
    try {
      const hv = await host.hypervisor(PLUGIN);
      await hv.createVm({ vmId: a, config: {} });
      await hv.createVm({ vmId: b, config: {} });
    } finally {
      await host.close();
    }
    const r = await cli(['info', 'abcd']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(a);
    expect(r.stderr).toContain(b);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(await ok(['info', 'abcd1', '--json']))).toMatchObject({ id: a });
    await ok(['rm', a]);
    await ok(['rm', 'abcd2']);
  }, 60_000);
});

describe('ps -q and --filter', () => {
  it('lists ids only with -q, and filters by status, plugin and name', async () => {
    const a = (await ok(['run', '--detach', '--plugin', PLUGIN, '--name', 'alpha'])).trim();
    const b = (await ok(['create', '--plugin', PLUGIN, '--name', 'beta'])).trim();
    const quiet = (await ok(['ps', '-q'])).trim().split('\n');
    expect(quiet).toEqual(expect.arrayContaining([a, b]));
    expect((await ps('--filter', 'status=running')).map((r) => r.id)).toEqual([a]);
    expect((await ps('--filter', 'name=beta')).map((r) => r.id)).toEqual([b]);
    expect((await ps('--filter', `plugin=${PLUGIN}`, '--filter', 'status=created')).map((r) => r.id)).toEqual([b]);
    expect((await ok(['ps', '-q', '--filter', 'status=created'])).trim()).toBe(b);
    const bad = await cli(['ps', '--filter', 'colour=red']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('status');
    const table = await ok(['ps']);
    expect(table).toMatch(new RegExp(`^${a}\\s.*\\salpha$`, 'm'));
    await ok(['rm', '-f', 'alpha']);
    await ok(['rm', 'beta']);
  }, 60_000);
});

describe('devices, resize, info', () => {
  it('attaches and detaches a disk, resizes vCPUs and memory, and info shows it all', async () => {
    const vmJson = join(work, 'vm.json');
    await writeFile(vmJson, JSON.stringify({ vcpus: { boot: 1, max: 4 }, memory: { sizeMiB: 128, maxMiB: 512 } }));
    const id = (await ok(['run', '--detach', '--plugin', PLUGIN, '--name', 'hot', '--vm-config', vmJson])).trim();
    const disk = join(work, 'disk.img');
    await writeFile(disk, Buffer.alloc(1024 * 1024));
    const deviceJson = join(work, 'disk.json');
    await writeFile(deviceJson, JSON.stringify({ type: 'block', id: 'data0', path: disk }));
    expect((await ok(['attach-device', 'hot', deviceJson])).trim()).toBe('data0');
    expect(JSON.parse(await ok(['resize', 'hot', '--vcpus', '3', '--json']))).toMatchObject({ id, vcpus: 3 });
    expect(JSON.parse(await ok(['resize', 'hot', '--memory', '256', '--json']))).toMatchObject({ id, memoryMiB: 256 });
    const info = JSON.parse(await ok(['info', 'hot', '--json'])) as Record<string, unknown>;
    expect(info).toMatchObject({ id, name: 'hot', plugin: PLUGIN, status: 'running', vcpus: 3, memoryMiB: 256 });
    expect(info.pid).toBeTypeOf('number');
    guests.add(info.pid as number);
    expect(info.devices).toEqual(expect.arrayContaining([{ id: 'data0', type: 'block' }]));
    expect(info.console).toMatchObject({ kind: 'log' });
    const human = await ok(['info', 'hot']);
    expect(human).toMatch(/^Name:\s+hot$/m);
    expect(human).toMatch(/^Status:\s+running$/m);
    expect(human).toMatch(/data0/);

    await ok(['detach-device', 'hot', 'data0']);
    expect((JSON.parse(await ok(['info', 'hot', '--json'])) as { devices: { id: string }[] }).devices.map((d) => d.id)).not.toContain('data0');

    const neither = await cli(['resize', 'hot']);
    expect(neither.exitCode).toBe(2);
    const badDevice = join(work, 'bad.json');
    await writeFile(badDevice, JSON.stringify({ type: 'block', id: 'x', path: 'relative' }));
    const bad = await cli(['attach-device', 'hot', badDevice]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('path');
    await ok(['rm', '-f', 'hot']);
  }, 60_000);
});

describe('save and restore, as virsh does them', () => {
  it('save pauses a running VM, writes it and ends it; restore brings it back running under its name and id', async () => {
    const id = (await ok(['run', '--detach', '--plugin', PLUGIN, '--name', 'keeper'])).trim();
    const pid = (await rowOf(id))!.pid!;
    const file = join(work, 'keeper.snap');
    const saved = JSON.parse(await ok(['save', 'keeper', file, '--json'])) as Record<string, unknown>;
    expect(saved).toMatchObject({ id, name: 'keeper', path: file });
    expect(existsSync(file)).toBe(true);
    await eventually(() => !alive(pid), 5_000, `guest ${pid} to end`);
    expect(await rowOf(id)).toBeUndefined();

    const restored = (await ok(['restore', file])).trim();
    expect(restored).toBe(id);
    const row = await rowOf(id);
    expect(row).toMatchObject({ id, name: 'keeper', status: 'running' });
    guests.add(row!.pid!);

    // The name is taken again: a second restore of the same file is refused rather than making a twin.
    const twin = await cli(['restore', file]);
    expect(twin.exitCode).toBe(1);
    expect(twin.stderr).toContain('keeper');
    await ok(['rm', '-f', 'keeper']);
  }, 60_000);

  it('restore of a file that is not a saved VM is one clear error', async () => {
    const junk = join(work, 'junk.snap');
    await writeFile(junk, 'nothing');
    const r = await cli(['restore', junk]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(junk);
    expect(await readFile(junk, 'utf8')).toBe('nothing');
  });
});

describe('run --config after the command', () => {
  it('is a usage error pointing at --vm-config and at the global --config before the command', async () => {
    const vmJson = join(work, 'small.json');
    await writeFile(vmJson, JSON.stringify({ memory: { sizeMiB: 64 } }));
    const r = await cli(['run', '--plugin', PLUGIN, '--config', vmJson, '--timeout', '0.5']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('--vm-config');
    expect(r.stderr).toMatch(/before the command/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
