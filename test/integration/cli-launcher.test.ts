import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root } from '../../scripts/bundle.mjs';
import { alive, CLI, ensureCliBuilt, eventually, removeTempDirs, tempDir } from '../helpers.js';

/**
 * The hvplug executable as installed (package.json's bin, dist/cli/hvplug): pause and resume through a daemon start
 * from the fast path's startup snapshot; everything it declines, and every other command, is the CLI's, with the
 * CLI's own words.
 */
const LAUNCHER = join(root, 'dist/cli/hvplug');

let dirs: string[];
let daemon: ResultPromise | undefined;
let guest: number | undefined;

beforeAll(async () => {
  await ensureCliBuilt();
  const base = await tempDir('hvplug-launcher-');
  dirs = ['--state-dir', join(base, 'state'), '--runtime-dir', join(base, 'run')];
}, 120_000);

afterAll(async () => {
  if (guest !== undefined && alive(guest)) process.kill(-guest, 'SIGKILL');
  daemon?.kill('SIGTERM');
  await daemon?.catch(() => undefined);
  await removeTempDirs();
}, 30_000);

/** A command through `executable` (the launcher, or a copy of it), as a user's shell runs it. */
async function hvplug(args: readonly string[], executable = LAUNCHER): Promise<{ code: number; out: string; err: string }> {
  const r = await execa(executable, [...dirs, ...args], { reject: false, timeout: 60_000, env: { HVPLUG_CONFIG: '' } });
  return { code: r.exitCode ?? -1, out: r.stdout, err: r.stderr };
}

describe('the hvplug executable (dist/cli/hvplug)', () => {
  it('runs pause and resume through a daemon from the fast path snapshot, and leaves the rest to the CLI', async () => {
    // No daemon yet: the snapshot declines and the CLI answers, as it always does.
    const missing = await hvplug(['pause', 'nosuch']);
    expect(missing).toMatchObject({ code: 1, out: '' });
    expect(missing.err).toMatch(/^hvplug: no VM "nosuch" \(id, name or id prefix\) in the state directory /);

    let said = '';
    daemon = execa('node', [CLI, ...dirs, 'daemon'], { reject: false, env: { HVPLUG_CONFIG: '' } });
    daemon.stdout?.on('data', (b: Buffer) => (said += b.toString()));
    await eventually(() => said.includes('ready'), 60_000, 'the daemon to be ready');
    const run = await hvplug(['run', '--detach', '--plugin', 'example-proprietary', '--name', 'web']);
    expect(run.code, run.err).toBe(0);
    const id = run.out.trim();
    const status = async (): Promise<string | undefined> => {
      const rows = JSON.parse((await hvplug(['ps', '--json'])).out) as { id: string; status: string; pid?: number }[];
      const row = rows.find((r) => r.id === id);
      guest = row?.pid ?? guest;
      return row?.status;
    };
    expect(await status()).toBe('running');

    // A copy of the launcher and the snapshot with no CLI beside them: what it runs, the snapshot ran.
    const alone = join(await tempDir('hvplug-launcher-alone-'), 'cli');
    await mkdir(alone);
    for (const f of ['hvplug', 'fast.blob']) await copyFile(join(root, 'dist/cli', f), join(alone, f));
    const bare = join(alone, 'hvplug');
    expect(await hvplug(['pause', 'web'], bare)).toEqual({ code: 0, out: id, err: '' });
    expect(await status()).toBe('paused');
    expect(await hvplug(['resume', 'web', '--json'], bare)).toEqual({ code: 0, out: JSON.stringify({ id, status: 'running' }), err: '' });
    expect(await status()).toBe('running');
    // Refused by the plugin after the call was sent: the outcome is the snapshot's, in the CLI's words.
    const twice = await hvplug(['resume', 'web'], bare);
    expect(twice).toMatchObject({ code: 1, out: '' });
    expect(twice.err).toBe(`hvplug: vm/resume: VM ${id} is running; this needs paused`);
    // Anything else is the CLI's, which this copy does not have.
    expect((await hvplug(['--version'], bare)).code).not.toBe(0);
    // A reader that went away (EPIPE) drops the output; the command is done all the same, and says nothing of it.
    const piped = await execa('bash', ['-c', '"$0" "$@" | true; exit "${PIPESTATUS[0]}"', bare, ...dirs, 'pause', 'web'], { reject: false, timeout: 60_000, env: { HVPLUG_CONFIG: '' } });
    expect({ code: piped.exitCode, err: piped.stderr }).toEqual({ code: 0, err: '' });
    expect(await status()).toBe('paused');
    expect(await hvplug(['resume', 'web'], bare)).toEqual({ code: 0, out: id, err: '' });

    // The installed launcher: the same outcomes, and the CLI's own for what the snapshot declines.
    expect(await hvplug(['pause', id.slice(0, 8)])).toEqual({ code: 0, out: id, err: '' });
    expect(await hvplug(['resume', 'web'])).toEqual({ code: 0, out: id, err: '' });
    expect(await hvplug(['resume', 'web'])).toEqual(twice);
    const unknown = await hvplug(['pause', 'nosuch']);
    expect(unknown).toEqual(missing);
    expect((await hvplug(['--version'])).out).toMatch(/^\d+\.\d+\.\d+/);

    expect((await hvplug(['stop', '--force', 'web'])).code).toBe(0);
  }, 120_000);
});
