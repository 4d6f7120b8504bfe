import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { PluginClient, PluginExitedError, PluginSpec } from 'hvplug';
import { bundle, root, snapshot } from '../../scripts/bundle.mjs';
import { memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

/**
 * A bundled plugin's executable is a launcher (scripts/bundle.mjs) that starts the plugin from its V8 startup
 * snapshot, or from its bundle when the snapshot cannot be used.
 */
const NAME = 'example-proprietary';
const clients: PluginClient[] = [];

async function start(command: string): Promise<{ client: PluginClient; argv: string[]; startedAt: number }> {
  const dir = await tempDir();
  const startedAt = Date.now();
  const client = await PluginClient.start(PluginSpec.parse({ name: NAME, command }), {
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logger: memoryLogger().logger,
    logLevel: 'warn',
    hostVersion: '0',
  });
  clients.push(client);
  // The launcher execs node: the plugin's pid is the one spawned, and /proc tells how node was started.
  const argv = readFileSync(`/proc/${client.pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  return { client, argv, startedAt };
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(removeTempDirs);

describe('plugin launcher', () => {
  it('starts the plugin from its startup snapshot, with its runtime state taken at run time', async () => {
    const { client, argv, startedAt } = await start(pluginExecutable(NAME));
    expect(argv).toContain('--snapshot-blob');
    expect(argv.find((a) => a.endsWith('.blob'))).toBe(`${pluginExecutable(NAME)}.blob`);
    expect(client.info.plugin.name).toBe(NAME);
    // Built into the snapshot, the plugin still reports this process, not the one that built it.
    const echo = (await client.call('x-example/echo', { message: 'hi' }, { timeoutMs: 5_000 })) as { pid: number; uptimeMs: number };
    expect(echo.pid).toBe(client.pid);
    expect(echo.uptimeMs).toBeLessThanOrEqual(Date.now() - startedAt + 1_000);
  });

  it('finds its snapshot when started through a symlink, as a PATH install links it', async () => {
    const link = join(await tempDir(), `hvplug-plugin-${NAME}`);
    await symlink(pluginExecutable(NAME), link);
    const { argv } = await start(link);
    expect(argv).toContain(`${pluginExecutable(NAME)}.blob`);
  });

  it('runs the bundle on the node on PATH when the snapshot is not there', async () => {
    const dir = await tempDir();
    const launcher = join(dir, `hvplug-plugin-${NAME}`);
    await copyFile(pluginExecutable(NAME), launcher);
    await copyFile(`${pluginExecutable(NAME)}.mjs`, `${launcher}.mjs`);
    const { client, argv } = await start(launcher);
    expect(argv).not.toContain('--snapshot-blob');
    expect(argv).toContain(`${launcher}.mjs`);
    expect(client.info.plugin.name).toBe(NAME);
  });

  /** Builds a plugin of `lines` whose snapshot cannot be made, and checks it is built without one and starts from its bundle. */
  async function startsFromBundle(lines: string[]): Promise<void> {
    const dir = await tempDir();
    const entry = join(dir, 'main.ts');
    await writeFile(entry, lines.join('\n'));
    const out = join(dir, `hvplug-plugin-${NAME}.mjs`);
    await bundle(entry, out);
    await snapshot(entry, out);
    expect(existsSync(join(dir, `hvplug-plugin-${NAME}.blob`))).toBe(false);
    const { client, argv } = await start(join(dir, `hvplug-plugin-${NAME}`));
    expect(argv).not.toContain('--snapshot-blob');
    expect(client.info.plugin.name).toBe(NAME);
  }

  it('builds a plugin that cannot go into a snapshot anyway, and starts it from its bundle', async () => {
    await startsFromBundle([
      "import { startupSnapshot } from 'node:v8';",
      "import { servePlugin } from 'hvplug/plugin-sdk';",
      "if (startupSnapshot.isBuildingSnapshot()) throw new Error('this plugin holds what a snapshot cannot');",
      `servePlugin({ info: { name: '${NAME}', version: '1.0.0', vendor: 'hvplug tests' }, capabilities: {}, handlers: {} });`,
    ]);
  });

  it('starts from a snapshot that holds nothing of its rehearsal: the VM it created there is not known', async () => {
    const { client } = await start(pluginExecutable(NAME));
    // plugins/example-proprietary/src/main.ts rehearses vm/create of a VM of this id while its snapshot is built.
    await expect(client.call('vm/info', { vmId: 'rehearsal' }, { timeoutMs: 5_000 })).rejects.toThrow(/no VM rehearsal/);
    await client.call('vm/create', { vmId: 'rehearsal', config: {} }, { timeoutMs: 5_000 });
    expect(await client.call('vm/info', { vmId: 'rehearsal' }, { timeoutMs: 5_000 })).toMatchObject({ vmId: 'rehearsal', status: 'created' });
  });

  it('builds a plugin whose rehearsal fails without a snapshot, and starts it from its bundle', async () => {
    await startsFromBundle([
      "import { servePlugin } from 'hvplug/plugin-sdk';",
      `const def = () => ({ info: { name: '${NAME}', version: '1.0.0', vendor: 'hvplug tests' }, capabilities: {}, handlers: { 'vm/create': () => { throw new Error('no room'); } } });`,
      "servePlugin(def(), { rehearsal: { definition: def, calls: [{ method: 'vm/create', params: { vmId: 'a', config: {} } }] } });",
    ]);
  });

  /** A copy of the built launcher, its manifest, bundle and snapshot in a directory of the test's; the snapshot then changed by `damage`. */
  async function damagedCopy(damage: (blob: Buffer) => Buffer): Promise<{ launcher: string; blob: string; listed: string; actual: string }> {
    const dir = await tempDir();
    const launcher = join(dir, `hvplug-plugin-${NAME}`);
    for (const ext of ['', '.mjs', '.manifest.json']) await copyFile(`${pluginExecutable(NAME)}${ext}`, `${launcher}${ext}`);
    const blob = `${launcher}.blob`;
    const bytes = damage(readFileSync(`${pluginExecutable(NAME)}.blob`));
    await writeFile(blob, bytes);
    const manifest = JSON.parse(readFileSync(`${launcher}.manifest.json`, 'utf8')) as { snapshot: { sha256: string } };
    return { launcher, blob, listed: manifest.snapshot.sha256, actual: createHash('sha256').update(bytes).digest('hex') };
  }

  it('names a damaged snapshot when the plugin dies of it before answering initialize', async () => {
    // Cut short, as a copy interrupted or a full disk leaves it: node dies loading it, by a signal, without a word.
    const { launcher, blob, listed, actual } = await damagedCopy((b) => b.subarray(0, b.length >> 1));
    const err = await start(launcher).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(PluginExitedError);
    expect(err?.message).toMatch(/before answering initialize/);
    expect(err?.message).toContain(`its startup snapshot ${blob} is not the one its manifest names`);
    expect(err?.message).toContain(`SHA-256 ${actual}, the manifest says ${listed}`);
  });

  it('looks at a FIFO in place of a file of the plugin without waiting on it', async () => {
    const { launcher, blob } = await damagedCopy((b) => b);
    await rm(blob);
    await execa('mkfifo', [blob]);
    // Not a file, so the launcher runs the bundle, which is cut short: node reports a syntax error, and the host the rest.
    const bundled = `${launcher}.mjs`;
    await writeFile(bundled, readFileSync(bundled).subarray(0, 4096));
    const err = await start(launcher).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(PluginExitedError);
    expect(err?.message).toContain(`its startup snapshot ${blob} is not a regular file`);
    expect(err?.message).toContain(`its bundle ${bundled} is not the one its manifest names`);
  });

  it('ships each bundled plugin in the npm package as launcher, manifest and bundle, never its snapshot', async () => {
    const { stdout } = await execa('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root });
    const [pack] = JSON.parse(stdout) as [{ files: { path: string }[] }];
    const shipped = new Set(pack.files.map((f) => f.path));
    for (const name of ['example-proprietary', 'qemu', 'cloud-hypervisor']) {
      expect(shipped).toContain(`plugins/${name}/dist/hvplug-plugin-${name}`);
      expect(shipped).toContain(`plugins/${name}/dist/hvplug-plugin-${name}.mjs`);
      // Without it, a pinned launcher is refused (test/integration/pin.test.ts).
      expect(shipped).toContain(`plugins/${name}/dist/hvplug-plugin-${name}.manifest.json`);
    }
    // A snapshot loads only in the node that built it: an installed package runs the bundles.
    expect([...shipped].filter((p) => p.endsWith('.blob'))).toEqual([]);
  });
});
