import { existsSync } from 'node:fs';
import { chmod, chown, lchown, lstat, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileStateStore, PluginHost, type VmRecord } from 'hvplug';
import { execa } from 'execa';
import { CLI, fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

// Planting a trap owned by another user takes chown, which takes root.
const ROOT = process.getuid?.() === 0;
const needsRoot = ROOT ? '' : ' (skipped: needs root, to chown a trap to uid 65534)';
const OTHER = 65534;

const hosts: PluginHost[] = [];

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  await removeTempDirs();
});

/** A host on the default runtime directory: no XDG_RUNTIME_DIR, so $TMPDIR/hvplug-<uid>. */
async function defaultDirHost(): Promise<{ host: PluginHost; tmp: string; runtimeDir: string }> {
  const tmp = await tempDir();
  const host = new PluginHost({
    stateDir: join(tmp, 'state'),
    env: { TMPDIR: tmp, PATH: process.env.PATH },
    plugins: [{ name: 'probe', command: fixture('probe') }],
    logger: memoryLogger().logger,
  });
  hosts.push(host);
  return { host, tmp, runtimeDir: join(tmp, `hvplug-${process.getuid!()}`) };
}

async function refusal(host: PluginHost): Promise<string> {
  const err = await host.hypervisor('probe').then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  return (err as Error).message;
}

describe('the default runtime directory', () => {
  it('is $TMPDIR/hvplug-<uid> without XDG_RUNTIME_DIR, created 0700 and ours', async () => {
    const { host, runtimeDir } = await defaultDirHost();
    expect(host.runtimeDir).toBe(runtimeDir);
    await host.hypervisor('probe');
    for (const dir of [runtimeDir, join(runtimeDir, 'probe')]) {
      const st = await lstat(dir);
      expect(st.isDirectory()).toBe(true);
      expect(st.mode & 0o777).toBe(0o700);
      expect(st.uid).toBe(process.getuid!());
    }
  });

  it(`planted as a symlink to another user's directory: refused, naming the path${needsRoot}`, { skip: !ROOT }, async () => {
    const { host, tmp, runtimeDir } = await defaultDirHost();
    const elsewhere = join(tmp, 'elsewhere');
    await mkdir(elsewhere, { mode: 0o777 });
    await chown(elsewhere, OTHER, OTHER);
    await symlink(elsewhere, runtimeDir);
    await lchown(runtimeDir, OTHER, OTHER);
    const message = await refusal(host);
    expect(message).toContain(runtimeDir);
    expect(message).toMatch(/symbolic link/);
    expect(await readdir(elsewhere)).toEqual([]);
  });

  it(`planted as a directory owned by another uid: refused, naming the path and the owner${needsRoot}`, { skip: !ROOT }, async () => {
    const { host, runtimeDir } = await defaultDirHost();
    await mkdir(runtimeDir, { mode: 0o700 });
    await chown(runtimeDir, OTHER, OTHER);
    const message = await refusal(host);
    expect(message).toContain(runtimeDir);
    expect(message).toMatch(/owned by uid 65534/);
    expect(await readdir(runtimeDir)).toEqual([]);
  });

  it('ours but 0777 (anyone may have planted something in it): refused, not tightened', async () => {
    const { host, runtimeDir } = await defaultDirHost();
    await mkdir(runtimeDir);
    await chmod(runtimeDir, 0o777);
    const message = await refusal(host);
    expect(message).toContain(runtimeDir);
    expect(message).toMatch(/writable by group or others \(mode 0777\)/);
    expect((await lstat(runtimeDir)).mode & 0o777).toBe(0o777);
    expect(await readdir(runtimeDir)).toEqual([]);
  });

  it('ours and 0755 (readable, but nobody else could write in it): tightened to 0700 and used', async () => {
    const { host, runtimeDir } = await defaultDirHost();
    await mkdir(runtimeDir);
    await chmod(runtimeDir, 0o755);
    await host.hypervisor('probe');
    expect((await lstat(runtimeDir)).mode & 0o777).toBe(0o700);
  });

  it("ours and 0710 (as a daemon's --group makes it: its group may pass, not look): left so, its plugin directories 0700", async () => {
    const { host, runtimeDir } = await defaultDirHost();
    await mkdir(runtimeDir);
    await chmod(runtimeDir, 0o710);
    await host.hypervisor('probe');
    expect((await lstat(runtimeDir)).mode & 0o777).toBe(0o710);
    expect((await lstat(join(runtimeDir, 'probe'))).mode & 0o777).toBe(0o700);
  });

  it(`a plugin's directory inside it planted as a symlink: refused${needsRoot}`, { skip: !ROOT }, async () => {
    const { host, tmp, runtimeDir } = await defaultDirHost();
    await mkdir(runtimeDir, { mode: 0o700 });
    const elsewhere = join(tmp, 'elsewhere');
    await mkdir(elsewhere);
    await chown(elsewhere, OTHER, OTHER);
    await symlink(elsewhere, join(runtimeDir, 'probe'));
    const message = await refusal(host);
    expect(message).toContain(join(runtimeDir, 'probe'));
    expect(message).toMatch(/symbolic link/);
  });
});

describe('the state directory', () => {
  it(`a records directory owned by another uid: the record write is refused, naming the path${needsRoot}`, { skip: !ROOT }, async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'vms'), { recursive: true, mode: 0o700 });
    await chown(join(dir, 'vms'), OTHER, OTHER);
    const now = new Date().toISOString();
    const record: VmRecord = {
      vmId: 'a',
      plugin: 'p',
      config: { vcpus: { boot: 1 }, memory: { sizeMiB: 256, hugepages: false, prealloc: false }, devices: [], console: 'log', annotations: {}, plugin: {} },
      status: 'created',
      createdAt: now,
      updatedAt: now,
    };
    const err = await new FileStateStore(dir).put(record).catch((e: unknown) => e);
    expect((err as Error).message).toContain(join(dir, 'vms'));
    expect((err as Error).message).toMatch(/owned by uid 65534/);
    expect(await readdir(join(dir, 'vms'))).toEqual([]);
  });

  it('a state directory that is a symlink: refused before any plugin starts', async () => {
    const tmp = await tempDir();
    await mkdir(join(tmp, 'real'));
    await symlink(join(tmp, 'real'), join(tmp, 'state'));
    const host = new PluginHost({
      stateDir: join(tmp, 'state'),
      runtimeDir: join(tmp, 'run'),
      plugins: [{ name: 'probe', command: fixture('probe') }],
      logger: memoryLogger().logger,
    });
    hosts.push(host);
    const message = await refusal(host);
    expect(message).toContain(join(tmp, 'state'));
    expect(message).toMatch(/symbolic link/);
  });
});

describe('an unsafe directory given to the command line', () => {
  it('is refused in words, with the path and what is wrong, not as an internal error', async () => {
    const tmp = await tempDir();
    const stateDir = join(tmp, 'state');
    await mkdir(stateDir);
    await chmod(stateDir, 0o777);
    const r = await execa('node', [CLI, '--state-dir', stateDir, '--runtime-dir', join(tmp, 'run'), 'run', '--plugin', 'example-proprietary', '--timeout', '5'], { reject: false, env: { HVPLUG_CONFIG: '' } });
    expect({ code: r.exitCode, out: r.stdout, err: r.stderr }).toEqual({
      code: 1,
      out: '',
      err: `hvplug: refusing to use ${stateDir}: it is writable by group or others (mode 0777)`,
    });
    expect((await lstat(stateDir)).mode & 0o777).toBe(0o777);
  });
});

describe('records in a state directory others may write', () => {
  // A record names where its plugin came from (a config file), and the host starts that plugin to act on the VM:
  // one planted by whoever could write there would run their command as this user.
  it('are not read, and the plugin a planted record names never runs: the store, ps and stop refuse', async () => {
    const tmp = await tempDir();
    const stateDir = join(tmp, 'state');
    await mkdir(join(stateDir, 'vms'), { recursive: true });
    await chmod(stateDir, 0o777);
    const marker = join(tmp, 'ran');
    const script = join(tmp, 'evil.sh');
    await writeFile(script, `#!/bin/sh\ntouch ${marker}\nexit 1\n`, { mode: 0o755 });
    const config = join(tmp, 'evil.toml');
    await writeFile(config, `[plugins.evil]\ncommand = "${script}"\n`);
    const now = new Date().toISOString();
    const planted = {
      vmId: 'planted',
      plugin: 'evil',
      source: config,
      config: { vcpus: { boot: 1 }, memory: { sizeMiB: 256, hugepages: false, prealloc: false }, devices: [], console: 'log', annotations: {}, plugin: {} },
      status: 'running',
      createdAt: now,
      updatedAt: now,
    };
    await writeFile(join(stateDir, 'vms', 'planted.json'), JSON.stringify(planted));
    const refusal = `refusing to use ${stateDir}: it is writable by group or others (mode 0777)`;

    const store = new FileStateStore(stateDir);
    await expect(store.list()).rejects.toThrow(refusal);
    await expect(store.get('planted')).rejects.toThrow(refusal);
    for (const args of [['ps'], ['stop', 'planted'], ['rm', '--force', 'planted']]) {
      const r = await execa('node', [CLI, '--state-dir', stateDir, '--runtime-dir', join(tmp, 'run'), ...args], { reject: false, env: { HVPLUG_CONFIG: '' } });
      expect({ args, code: r.exitCode, out: r.stdout, err: r.stderr }).toEqual({ args, code: 1, out: '', err: `hvplug: ${refusal}` });
    }
    expect(existsSync(marker)).toBe(false);
    expect(existsSync(join(stateDir, 'vms', 'planted.json'))).toBe(true);
  });
});
