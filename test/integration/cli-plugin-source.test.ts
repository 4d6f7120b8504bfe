import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, CLI, ensureCliBuilt, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

/**
 * A VM started with a plugin the default lookup does not know (`--config` before the command, or a
 * `--plugin-dir`) is found again by later commands given neither: its record remembers where its plugin came
 * from. The real binary, each command its own process.
 */
let stateDir: string;
let runtimeDir: string;
let work: string;
const guests = new Set<number>();

beforeAll(async () => {
  await ensureCliBuilt();
  stateDir = await tempDir('hvplug-cli-src-state-');
  runtimeDir = await tempDir('hvplug-cli-src-run-');
  work = await tempDir('hvplug-cli-src-work-');
}, 120_000);

afterAll(async () => {
  for (const pid of guests) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await removeTempDirs();
});

async function cli(args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  // No config of the developer's own, and no XDG default: only what the command line gives.
  const r = await execa('node', [CLI, '--state-dir', stateDir, '--runtime-dir', runtimeDir, ...args], {
    reject: false,
    timeout: 60_000,
    env: { HVPLUG_CONFIG: '', XDG_CONFIG_HOME: work },
  });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function ok(args: readonly string[]): Promise<string> {
  const r = await cli(args);
  expect(r.exitCode, `hvplug ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

interface PsRow {
  id: string;
  plugin: string;
  status: string;
  pid?: number;
  problem?: string;
}

async function rowOf(id: string): Promise<PsRow | undefined> {
  const rows = JSON.parse(await ok(['ps', '--json'])) as PsRow[];
  for (const r of rows) if (r.pid !== undefined) guests.add(r.pid);
  return rows.find((r) => r.id === id);
}

describe('a record remembers where its plugin came from', () => {
  it('a plugin from --config: ps, info, stop and rm find it without --config', async () => {
    const config = join(work, 'acme.toml');
    await writeFile(config, `[plugins.acme]\ncommand = "${pluginExecutable('example-proprietary')}"\n`);
    const id = (await ok(['--config', config, 'run', '--detach', '--plugin', 'acme'])).trim();
    const row = await rowOf(id);
    expect(row).toMatchObject({ plugin: 'acme', status: 'running' });
    expect(JSON.parse(await ok(['info', '--json', id]))).toMatchObject({ status: 'running' });
    await ok(['stop', '--keep', id]);
    expect(await rowOf(id)).toMatchObject({ status: 'stopped' });
    await ok(['rm', id]);
    expect(await rowOf(id)).toBeUndefined();
  });

  it('a config file that no longer names the plugin: the command fails naming the plugin and where it came from', async () => {
    const config = join(work, 'gone.toml');
    await writeFile(config, `[plugins.gone]\ncommand = "${pluginExecutable('example-proprietary')}"\n`);
    const id = (await ok(['--config', config, 'run', '--detach', '--plugin', 'gone'])).trim();
    await writeFile(config, '');
    const r = await cli(['pause', id]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('no plugin named gone');
    expect(r.stderr).toContain(config);
    // The plugin back in its file: the VM is found and ended.
    await writeFile(config, `[plugins.gone]\ncommand = "${pluginExecutable('example-proprietary')}"\n`);
    await ok(['rm', '-f', id]);
    expect(await rowOf(id)).toBeUndefined();
  });
});
