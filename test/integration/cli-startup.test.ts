import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ensureCliBuilt, removeTempDirs, tempDir } from '../helpers.js';

/**
 * What a user reads when a plugin cannot be started or a config file is wrong: the real binary in a child
 * process, each failure named for what it is and naming the plugin.
 */
let dir: string;
let config: string;

beforeAll(async () => {
  await ensureCliBuilt();
  dir = await tempDir('hvplug-cli-startup-');
  const notExecutable = join(dir, 'plain-file');
  await writeFile(notExecutable, '#!/bin/sh\n');
  await chmod(notExecutable, 0o644);
  config = join(dir, 'plugins.toml');
  await writeFile(
    config,
    [
      '[plugins.quits]',
      'command = "/bin/true"',
      '[plugins.chatty]',
      'command = "/bin/echo"',
      'args = ["hello"]',
      '[plugins.silent]',
      'command = "/bin/sleep"',
      'args = ["60"]',
      'startTimeoutMs = 1500',
      '[plugins.missing]',
      `command = "${join(dir, 'no-such-plugin')}"`,
      '[plugins.unrunnable]',
      `command = "${notExecutable}"`,
      '[plugins.nameless]',
      'command = "no-such-plugin-on-path"',
      '',
    ].join('\n'),
  );
}, 120_000);

afterAll(removeTempDirs);

/** The binary with a private state and runtime directory and no config file; an env value of null unsets it. */
function cli(args: readonly string[], env: Record<string, string | null> = {}) {
  const merged: Record<string, string | null | undefined> = {
    ...process.env,
    HVPLUG_STATE_DIR: join(dir, 'state'),
    HVPLUG_RUNTIME_DIR: join(dir, 'run'),
    HVPLUG_CONFIG: '',
    ...env,
  };
  const clean = Object.fromEntries(Object.entries(merged).filter((e): e is [string, string] => typeof e[1] === 'string'));
  return execa('node', [CLI, ...args], { reject: false, timeout: 60_000, env: clean, extendEnv: false });
}

const run = (plugin: string) => cli(['--config', config, 'run', '--plugin', plugin, '--timeout', '5']);

describe('a plugin that cannot be started', () => {
  it('one that exits before answering initialize: its code, and that it never answered', async () => {
    const r = await run('quits');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('plugin quits exited with code 0 before answering initialize');
  });

  it('one that prints text on stdout: the text it wrote, and that stdout is for framed messages', async () => {
    const r = await run('chatty');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/plugin chatty wrote "hello\\n" on stdout/);
  });

  it('one that never answers: its name and the deadline it missed, which the config sets', async () => {
    const r = await run('silent');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('plugin silent did not answer initialize within 1.5 s');
  });

  it('one whose executable does not exist: not found, with the path', async () => {
    const r = await run('missing');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`plugin missing: ${join(dir, 'no-such-plugin')} not found`);
    expect(r.stderr).not.toContain('ENOENT');
  });

  it('one whose file is not executable: says so', async () => {
    const r = await run('unrunnable');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`plugin unrunnable: ${join(dir, 'plain-file')} is not executable`);
  });

  it('one whose command is not on PATH: not found on PATH', async () => {
    const r = await run('nameless');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('plugin nameless: no-such-plugin-on-path not found on PATH');
  });

  it('hvplug plugins says which configured plugins cannot run, instead of listing them as usable', async () => {
    const r = await cli(['--config', config, 'plugins', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as { name: string; problem?: string }[];
    const problem = (name: string) => rows.find((p) => p.name === name)?.problem;
    expect(problem('missing')).toBe('not found');
    expect(problem('unrunnable')).toBe('not executable');
    expect(problem('nameless')).toBe('not found on PATH');
    expect(problem('quits')).toBeUndefined();
    expect(problem('example-proprietary')).toBeUndefined();
    const human = await cli(['--config', config, 'plugins']);
    expect(human.stdout).toMatch(/^missing\s.*not found$/m);
  });
});

describe('a plugin whose VMM is not installed', () => {
  it('cloud-hypervisor without the cloud-hypervisor binary: says which binary is missing and how to name it, no errno', async () => {
    const r = await cli(['run', '--plugin', 'cloud-hypervisor', '--timeout', '5', '--kernel', process.execPath], { PATH: '/usr/bin:/bin' });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('the Cloud Hypervisor binary cloud-hypervisor was not found on PATH');
    expect(r.stderr).toContain('HVPLUG_CH_BINARY');
    expect(r.stderr).not.toContain('ENOENT');
  });
});

describe('a plugin name nothing provides', () => {
  it('lists the plugins that exist, not every PATH directory', async () => {
    const r = await cli(['run', '--plugin', 'nope'], { PATH: `${dir}:/usr/bin:/bin:/usr/local/bin` });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('no plugin named nope');
    expect(r.stderr).toMatch(/plugins found: .*example-proprietary/);
    expect(r.stderr).not.toContain('/usr/local/bin');
  });
});

describe('a config file with a key hvplug does not know', () => {
  it('is refused with the file, the table and the key (a misspelt sha256 must not turn the check off)', async () => {
    const bad = join(dir, 'typo.toml');
    await writeFile(bad, '[plugins.acme]\ncommand = "/bin/true"\nsha265 = "00"\n');
    const r = await cli(['--config', bad, 'plugins']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`${bad}: plugins.acme: unknown key "sha265"`);
  });

  it('at the top level too', async () => {
    const bad = join(dir, 'top.toml');
    await writeFile(bad, 'plugin_dirs = ["/tmp"]\n');
    const r = await cli(['--config', bad, 'plugins']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`${bad}: unknown key "plugin_dirs"`);
  });
});

describe('the default config file', () => {
  it('is $XDG_CONFIG_HOME/hvplug/plugins.toml when --config and $HVPLUG_CONFIG are not given; an empty $HVPLUG_CONFIG means none', async () => {
    const home = join(dir, 'xdg');
    await mkdir(join(home, 'hvplug'), { recursive: true });
    const file = join(home, 'hvplug', 'plugins.toml');
    await writeFile(file, '[plugins.acme]\ncommand = "/bin/true"\n');
    const found = await cli(['plugins', '--json'], { XDG_CONFIG_HOME: home, HVPLUG_CONFIG: null });
    expect(found.exitCode, found.stderr).toBe(0);
    expect(JSON.parse(found.stdout)).toContainEqual(expect.objectContaining({ name: 'acme', source: file }));
    const none = await cli(['plugins', '--json'], { XDG_CONFIG_HOME: home, HVPLUG_CONFIG: '' });
    expect((JSON.parse(none.stdout) as { name: string }[]).map((p) => p.name)).not.toContain('acme');
  });
});

describe('hvplug with no command', () => {
  it('prints the help and exits 0; -V prints the version', async () => {
    const r = await cli([]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^Usage: hvplug/m);
    const v = await cli(['-V']);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('help text', () => {
  it('wraps to the terminal width (COLUMNS), option help under its column', async () => {
    for (const args of [['run', '--help'], ['--help'], ['plugins', '--help']]) {
      const r = await cli(args, { COLUMNS: '60' });
      expect(r.exitCode).toBe(0);
      const long = r.stdout.split('\n').filter((l) => l.length > 60);
      expect(long, args.join(' ')).toEqual([]);
    }
    const r = await cli(['run', '--help'], { COLUMNS: '60' });
    // A continuation line of --plugin's help starts in the help column, not at the margin.
    const lines = r.stdout.split('\n');
    const at = lines.findIndex((l) => l.startsWith('  --plugin <name>'));
    const column = lines[at]!.indexOf('plugin to use');
    expect(lines[at + 1]!.slice(0, column).trim()).toBe('');
    expect(lines[at + 1]!.length).toBeGreaterThan(column);
  });
});
