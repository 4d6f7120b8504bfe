import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { alive, eventually, pluginExecutable, tempDir } from '../helpers.js';
import { cli, daemonTestHooks, dirs, ok, ps, startDaemon } from '../daemon-helpers.js';

/**
 * unreachableLostAfterMs set where an operator sets things: `[plugins.<name>] unreachableLostAfterMs` in the config
 * file and `hvplug --unreachable-lost-after <seconds>`, honoured by `hvplug daemon` for a listening plugin (the
 * example plugin on a unix socket) that goes away.
 */
const PLUGIN = 'example-proprietary';
const plugins: ChildProcess[] = [];
const guests = daemonTestHooks(() => {
  for (const p of plugins) if (p.pid !== undefined && alive(p.pid)) process.kill(p.pid, 'SIGKILL');
});

/** The example plugin listening on a unix socket; resolves with the address it announced. */
async function listening(): Promise<{ child: ChildProcess; address: string }> {
  const dir = await tempDir('hvplug-unreach-plugin-');
  const child = spawn(pluginExecutable(PLUGIN), ['--listen', `unix:${join(dir, 'plugin.sock')}`, '--runtime-dir', join(dir, 'run')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  plugins.push(child);
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const address = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^listening (\S+)$/.exec(line);
      if (m) resolve(m[1] as string);
    });
    child.once('exit', (code) => reject(new Error(`the plugin exited (${code}) before listening: ${err}`)));
  });
  return { child, address };
}

async function configFile(table: string): Promise<string> {
  const file = join(await tempDir('hvplug-unreach-config-'), 'plugins.toml');
  await writeFile(file, table);
  return file;
}


/**
 * A daemon whose plugin is the listening one, one running VM through it; then the plugin dies. Resolves with the
 * seconds from the plugin's death to the VM's record saying lost, or undefined if it did not within `watchMs`.
 */
async function lostAfter(config: (address: string) => string, flags: readonly string[], watchMs: number): Promise<number | undefined> {
  const plugin = await listening();
  const d = await dirs();
  const file = await configFile(config(plugin.address));
  await startDaemon(d, ['--config', file, ...flags]);
  await ok(d, ['create', '--plugin', PLUGIN, '--name', 'far']);
  await ok(d, ['start', 'far']);
  const [row] = await ps(d);
  if (row?.pid !== undefined) guests.add(row.pid);
  expect(row?.status).toBe('running');
  plugin.child.kill('SIGKILL');
  const died = Date.now();
  const lost = await eventually(async () => (await ps(d))[0]?.status === 'lost', watchMs, 'the VM reported lost').then(
    () => true,
    (err: Error) => {
      if (!err.message.startsWith('timed out')) throw err;
      return false;
    },
  );
  if (lost) return (Date.now() - died) / 1000;
  // Not lost, and only because of the setting: still as it was, out of reach.
  expect((await ps(d))[0]?.status).toBe('running');
  return undefined;
}

describe('unreachableLostAfterMs from the command line and the config file', () => {
  it('--unreachable-lost-after 1 makes the daemon report the VMs of a plugin out of reach lost after about a second; by default they are not', async () => {
    const table = (address: string): string => `[plugins.${PLUGIN}]\nconnect = "${address}"\n`;
    const flagged = await lostAfter(table, ['--unreachable-lost-after', '1'], 20_000);
    expect(flagged).toBeDefined();
    // The health ping (5 s + 2 s) may be what notices the death; the setting counts from then.
    expect(flagged).toBeLessThan(15);
    // The default is 300 s: the same outage, watched past when 1 s would have struck, leaves the VM as it was.
    expect(await lostAfter(table, [], (flagged as number) * 1000 + 5_000)).toBeUndefined();
  }, 120_000);

  it("a plugin's own unreachableLostAfterMs in the config file wins over the flag (0 on the flag: never)", async () => {
    const table = (address: string): string => `[plugins.${PLUGIN}]\nconnect = "${address}"\nunreachableLostAfterMs = 1000\n`;
    const lost = await lostAfter(table, ['--unreachable-lost-after', '0'], 20_000);
    expect(lost).toBeDefined();
    expect(lost).toBeLessThan(15);
    // Shown by `hvplug plugins`.
    const file = await configFile(table('unix:/nowhere/plugin.sock'));
    const listed = JSON.parse(await ok(await dirs(), ['--config', file, 'plugins', '--json'])) as { name: string; unreachableLostAfterMs?: number }[];
    expect(listed.find((p) => p.name === PLUGIN)?.unreachableLostAfterMs).toBe(1000);
  }, 120_000);

  it('a bad value in the config file is an error naming the file, the table and the key', async () => {
    const d = await dirs();
    const cases: [string, RegExp][] = [
      ['connect = "unix:/nowhere/p.sock"\nunreachableLostAfterMs = -1', /must be 0 \(never\) or more milliseconds/],
      ['connect = "unix:/nowhere/p.sock"\nunreachableLostAfterMs = 1.5', /must be a whole number of milliseconds/],
      ['connect = "unix:/nowhere/p.sock"\nunreachableLostAfterMs = 2147483648', /must be at most 2147483647 ms/],
      ['connect = "unix:/nowhere/p.sock"\nunreachableLostAfterMs = "5m"', /expected number/],
      ['command = "/bin/true"\nunreachableLostAfterMs = 1000', /unreachableLostAfterMs is for connect/],
      ['connect = "unix:/nowhere/p.sock"\nunreachableLostAfter = 1000', /unknown key "unreachableLostAfter"/],
    ];
    for (const [body, message] of cases) {
      const file = await configFile(`[plugins.far]\n${body}\n`);
      const r = await cli(d, ['--config', file, 'plugins']);
      expect(r.exitCode, body).toBe(1);
      expect(r.stderr, body).toContain(file);
      expect(r.stderr, body).toMatch(/plugins\.far/);
      expect(r.stderr, body).toMatch(message);
      if (!body.includes('unreachableLostAfter =')) expect(r.stderr, body).toContain('unreachableLostAfterMs');
    }
  }, 60_000);

  it('a bad --unreachable-lost-after is a usage error naming the flag', async () => {
    const d = await dirs();
    for (const bad of ['-1', 'soon', '5m', '2147484']) {
      const r = await cli(d, [`--unreachable-lost-after=${bad}`, 'ps']);
      expect(r.exitCode, bad).toBe(2);
      expect(r.stderr.trim(), bad).toBe(
        `hvplug ps: --unreachable-lost-after: expected a number of seconds from 0 (never) to 2147483, got "${bad}" (see: hvplug ps --help)`,
      );
    }
    expect((await cli(d, ['--unreachable-lost-after', '0.5', 'ps'])).exitCode).toBe(0);
  }, 60_000);
});
