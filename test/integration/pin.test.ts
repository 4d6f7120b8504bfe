import { existsSync, readFileSync } from 'node:fs';
import { appendFile, chmod, copyFile, mkdir, readdir, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { IntegrityError, PluginClient, PluginSpawnError, PluginSpec } from 'hvplug';
import { sha256File } from '../../src/core/integrity.js';
import { memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

/**
 * A SHA-256 pin on a bundled plugin's launcher covers what runs: the launcher names its manifest by hash, the
 * manifest names the bundle and the snapshot by hash, and the host runs verified copies of them itself.
 */
const NAME = 'example-proprietary';
const BASE = `hvplug-plugin-${NAME}`;
const clients: PluginClient[] = [];

/** A copy of the built plugin's dist directory, as an install elsewhere would hold it. */
async function installCopy(): Promise<string> {
  const from = join(pluginExecutable(NAME), '..');
  const dir = await realpath(await tempDir());
  for (const f of await readdir(from)) if (f.startsWith(BASE)) await copyFile(join(from, f), join(dir, f));
  return dir;
}

async function startPinned(dir: string, sha256: string, opts: { command?: string; runtimeDir?: string } = {}): Promise<PluginClient> {
  const run = await tempDir();
  const client = await PluginClient.start(PluginSpec.parse({ name: NAME, command: opts.command ?? join(dir, BASE), sha256 }), {
    stateDir: join(run, 'state'),
    runtimeDir: opts.runtimeDir ?? join(run, 'run'),
    logger: memoryLogger().logger,
    logLevel: 'warn',
    hostVersion: '0',
  });
  clients.push(client);
  return client;
}

const argvOf = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(removeTempDirs);

describe('a pinned plugin launcher', () => {
  it('starts the plugin from verified copies of its snapshot, not through its sh script', async () => {
    const dir = await installCopy();
    const client = await startPinned(dir, await sha256File(join(dir, BASE)));
    const echo = (await client.call('x-example/echo', { message: 'hi' }, { timeoutMs: 5_000 })) as { message: string; pid: number };
    expect(echo.pid).toBe(client.pid);
    const argv = argvOf(client.pid);
    expect(argv).toContain('--snapshot-blob');
    const blob = argv[argv.indexOf('--snapshot-blob') + 1] ?? '';
    expect(blob.endsWith('.blob')).toBe(true);
    // Run from the host's private copy: nothing is read from the plugin directory after it was checked.
    expect(blob.startsWith(dir)).toBe(false);
    expect(await sha256File(blob)).toBe(await sha256File(join(dir, `${BASE}.blob`)));
  });

  it('starts from the verified bundle when the snapshot is not there, as in an installed package', async () => {
    const dir = await installCopy();
    await rm(join(dir, `${BASE}.blob`));
    const client = await startPinned(dir, await sha256File(join(dir, BASE)));
    expect(client.info.plugin.name).toBe(NAME);
    const argv = argvOf(client.pid);
    expect(argv).not.toContain('--snapshot-blob');
    const bundle = argv.find((a) => a.endsWith('.mjs')) ?? '';
    expect(bundle.startsWith(dir)).toBe(false);
    expect(await sha256File(bundle)).toBe(await sha256File(join(dir, `${BASE}.mjs`)));
  });

  it('finds the manifest next to the launcher when started through a symlink, as a PATH install links it', async () => {
    const dir = await installCopy();
    const link = join(await tempDir(), BASE);
    await symlink(join(dir, BASE), link);
    const client = await startPinned(dir, await sha256File(link), { command: link });
    expect(argvOf(client.pid)).toContain('--snapshot-blob');
  });

  it('refuses to keep its checked copies in a directory others can write', async () => {
    const dir = await installCopy();
    const runtimeDir = await tempDir();
    await mkdir(join(runtimeDir, 'pinned'));
    await chmod(join(runtimeDir, 'pinned'), 0o777);
    const err = await startPinned(dir, await sha256File(join(dir, BASE)), { runtimeDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginSpawnError);
    expect((err as Error).message).toContain(join(runtimeDir, 'pinned'));
  });

  for (const file of [BASE, `${BASE}.manifest.json`, `${BASE}.mjs`, `${BASE}.blob`]) {
    it(`refuses to start when ${file.replace(BASE, '<launcher>')} was changed after pinning, naming it`, async () => {
      const dir = await installCopy();
      const pin = await sha256File(join(dir, BASE));
      await appendFile(join(dir, file), '\n');
      const err = await startPinned(dir, pin).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as IntegrityError).path).toBe(join(dir, file));
    });
  }

  it('runs nothing when the bundle was replaced by other code and the snapshot removed', async () => {
    const dir = await installCopy();
    const pin = await sha256File(join(dir, BASE));
    const marker = join(dir, 'ran');
    await rm(join(dir, `${BASE}.blob`));
    await writeFile(join(dir, `${BASE}.mjs`), `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(marker)}, '');\n`);
    const err = await startPinned(dir, pin).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as IntegrityError).path).toBe(join(dir, `${BASE}.mjs`));
    await new Promise((r) => setTimeout(r, 200));
    expect(existsSync(marker)).toBe(false);
  });
});
