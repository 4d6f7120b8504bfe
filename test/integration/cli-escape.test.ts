// Plugin-supplied text reaches the terminal through the CLI's own messages escaped: a plugin whose name,
// version, vendor, description, machines, extension summaries, progress, event reasons and error messages
// carry terminal control sequences (test/fixtures/plugins/escape-plugin.ts), driven through the built CLI.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ensureCliBuilt, fixture, removeTempDirs, tempDir } from '../helpers.js';

const PLUGIN = fixture('escape-plugin');
/** What a terminal acts on: C0 controls but line feed and tab, DEL, C1 controls. */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/u;

let config: string;
let stateDir: string;

beforeAll(async () => {
  await ensureCliBuilt();
  const dir = await tempDir('hvplug-cli-escape-');
  stateDir = await tempDir('hvplug-cli-escape-state-');
  config = join(dir, 'plugins.toml');
  // An argument with an ESC of its own: the plugins listing escapes what the config says too.
  await writeFile(config, `[plugins.escape]\ncommand = ${JSON.stringify(PLUGIN)}\nargs = ["--title\\u001b]0;x\\u0007"]\n`);
}, 120_000);
afterAll(removeTempDirs);

async function hvplug(args: readonly string[]): Promise<{ exitCode?: number; stdout: string; stderr: string }> {
  const r = await execa('node', [CLI, ...args], {
    reject: false,
    timeout: 60_000,
    env: { HVPLUG_CONFIG: '', HVPLUG_STATE_DIR: stateDir, HVPLUG_RUNTIME_DIR: stateDir, NO_COLOR: '1' },
  });
  return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}

/** No control character on either stream; the escaped form of each sequence where the text is shown. */
function expectInert(r: { stdout: string; stderr: string }): void {
  expect(r.stdout, 'stdout').not.toMatch(CONTROL);
  expect(r.stderr, 'stderr').not.toMatch(CONTROL);
}

describe('plugin-supplied text in the CLI\'s messages', () => {
  it('inspect shows the handshake with every control sequence escaped', async () => {
    const r = await hvplug(['--config', config, 'inspect', 'escape']);
    expectInert(r);
    expect(r.stdout).toContain('escape\\x1b]0;pwned\\x07 1.0.0\\x1b[2J by vendor\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\x07\\x7f');
    // The description is one line of the display: its line break is shown, not taken.
    expect(r.stdout).toContain('a description\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\x07\\x7f\\x0asecond line');
    expect(r.stdout).toContain('machine\\x1b[2J');
    expect(r.stdout).toContain('summary\\x1b]0;pwned\\x07');
    expect(r.exitCode, r.stderr).toBe(0);
  });

  it('inspect --json keeps the strings as the plugin sent them, in JSON escapes (C1 and DEL too)', async () => {
    const r = await hvplug(['--config', config, 'inspect', 'escape', '--json']);
    expectInert(r);
    const { plugin } = JSON.parse(r.stdout) as { plugin: { name: string; vendor: string } };
    expect(plugin.name).toBe('escape\u001b]0;pwned\u0007');
    expect(plugin.vendor).toBe('vendor\u001b]0;pwned\u0007\u001b[2J\u009b31m\u0007\u007f');
  });

  it('plugins lists the configured command and arguments escaped', async () => {
    const r = await hvplug(['--config', config, 'plugins']);
    expectInert(r);
    expect(r.stdout).toContain('--title\\x1b]0;x\\x07');
  });

  it('run shows the plugin, its progress, events and the crash verdict escaped', async () => {
    const r = await hvplug(['--config', config, 'run', '--plugin', 'escape']);
    expectInert(r);
    expect(r.stdout).toContain('[hvplug] plugin escape\\x1b]0;pwned\\x07 1.0.0\\x1b[2J (vendor\\x1b]0;pwned\\x07');
    expect(r.stdout).toContain('[hvplug] booting\\x1b]0;pwned\\x07');
    expect(r.stdout).toContain('[hvplug] vm crashed: segfault\\x1b]0;pwned\\x07\\x1b[2J');
    expect(r.stderr).toContain('hvplug: the guest crashed: segfault\\x1b]0;pwned\\x07\\x1b[2J');
    // The log line (vm/info failed, with the plugin's message) is JSON, its C1 and DEL in \u escapes.
    expect(r.stderr).toContain('vm/info failed\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m\\u0007\\u007f');
    expect(r.exitCode).toBe(1);
  });

  it('conformance shows the plugin and its error messages escaped, in the progress lines and the summary', async () => {
    const r = await hvplug(['conformance', '--only', 'handshake.initialize,method.vm/info.valid', '--', PLUGIN]);
    expectInert(r);
    expect(r.stdout).toContain('escape\\x1b]0;pwned\\x07 1.0.0\\x1b[2J (vendor\\x1b]0;pwned\\x07');
    expect(r.stdout).toMatch(/^ {4}.*vm\/info failed\\x1b\]0;pwned\\x07\\x1b\[2J/m);
    expect(r.stdout).toMatch(/✗ method\.vm\/info\.valid: .*vm\/info failed\\x1b\]0;pwned\\x07/);
    expect(r.exitCode).toBe(1);
  });
});
