import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, execaSync } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { allCommands } from '../../src/cli/commands.js';
import { commandHelp } from '../../src/cli/help.js';
import { CLI, ensureCliBuilt, tempDir } from '../helpers.js';

/**
 * `hvplug man` through the built CLI, held to the help of the same hvplug: what help lists, the page lists, so that a
 * command or a flag added to the CLI cannot be missing from it. groff and man render it when they are installed.
 */

const root = join(import.meta.dirname, '../..');
let page: string;
let file: string;

beforeAll(async () => {
  await ensureCliBuilt();
  page = (await execa('node', [CLI, 'man'], { stripFinalNewline: false })).stdout;
  file = join(await tempDir('hvplug-man-'), 'hvplug.1');
  await writeFile(file, page);
}, 120_000);

/** The roff as text: fonts dropped, the escapes the page uses resolved. */
function plain(roff: string): string {
  return roff
    .replace(/\\f[BIRP]/g, '')
    .replace(/\\-/g, '-')
    .replace(/\\&/g, '')
    .replace(/\\\[u([0-9A-F]{4,6})\]/g, (_, hex: string) => String.fromCodePoint(Number.parseInt(hex, 16)))
    .replace(/\\e/g, '\\');
}

/** The page's parts: each .SH section and each .SS subsection by its title, as text. */
function parts(roff: string, macro: '.SH' | '.SS'): Map<string, string> {
  const out = new Map<string, string>();
  for (const chunk of roff.split(new RegExp(`^\\${macro} `, 'm')).slice(1)) {
    const [title = '', ...body] = chunk.split('\n');
    out.set(plain(title), plain(body.join('\n').split(/^\.SH /m)[0] ?? ''));
  }
  return out;
}

/** The terms help lists under a heading (Commands:, Arguments:, Options:, Global options:), as help prints them. */
function terms(help: string, heading: string): string[] {
  const section = help.split(`\n${heading}\n`)[1]?.split('\n\n')[0] ?? '';
  return section
    .split('\n')
    .map((l) => /^ {2}(\S+(?: \S+)*?)(?: {2,}|$)/.exec(l)?.[1])
    .filter((t): t is string => t !== undefined);
}

const has = (tool: string): boolean => execaSync(tool, ['--version'], { reject: false }).exitCode === 0;
const GROFF_SKIP = has('groff') ? undefined : 'no groff to render the page';
const MAN_SKIP = has('man') ? undefined : 'no man';

describe('hvplug man', () => {
  it('has a subsection for each command hvplug help lists, help too, and no other', async () => {
    const overview = (await execa('node', [CLI, 'help'])).stdout;
    const listed = terms(overview, 'Commands:').map((t) => t.split(' ')[0]);
    expect(listed).toContain('man');
    expect([...parts(page, '.SS').keys()]).toEqual(listed);
  });

  it("lists in a command's subsection its usage, every argument and option its help lists, and its globals under GLOBAL OPTIONS", async () => {
    const commands = parts(page, '.SS');
    const globals = parts(page, '.SH').get('GLOBAL OPTIONS') ?? '';
    for (const command of await allCommands()) {
      const help = commandHelp(command);
      const section = commands.get(command.name) ?? '';
      const usage = help.split('\n\n')[0]!.replace(/^Usage: /, '').split(/\n\s+/);
      const expected = [...usage, ...terms(help, 'Arguments:'), ...terms(help, 'Options:')];
      expect(expected.length, command.name).toBeGreaterThan(0);
      for (const t of expected) expect(section, `${command.name}: ${t}`).toContain(t);
      for (const t of terms(help, 'Global options:')) expect(globals, `${command.name}: ${t}`).toContain(t);
      for (const name of Object.keys(command.misplaced ?? {})) expect(section, command.name).toContain(`except --${name} (`);
    }
  });

  it('names the version and lists the exit statuses', async () => {
    const version = (await execa('node', [CLI, '--version'])).stdout.trim();
    expect(page.split('\n')[0]).toBe(`.TH HVPLUG 1 "" "hvplug ${version}" "User Commands"`);
    expect(parts(page, '.SH').get('EXIT STATUS')).toMatch(/0\n.*success[\s\S]*1\n.*runtime error[\s\S]*2\n.*bad command line/);
  });

  it('is the page the package ships (package.json "man", written by the build)', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { man: string[] };
    expect(pkg.man).toEqual(['./dist/man/hvplug.1']);
    expect(readFileSync(join(root, pkg.man[0]!), 'utf8')).toBe(page);
  });

  it.skipIf(GROFF_SKIP !== undefined)(`renders with groff without a warning${GROFF_SKIP ? ` (skipped: ${GROFF_SKIP})` : ''}`, async () => {
    const r = await execa('groff', ['-man', '-Tutf8', '-ww', '-z', file], { reject: false });
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
  });

  it.skipIf(MAN_SKIP !== undefined)(`reads with man -l, from a file and from stdin${MAN_SKIP ? ` (skipped: ${MAN_SKIP})` : ''}`, async () => {
    const env = { MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '80', LANG: 'C.UTF-8' };
    for (const args of [['-l', file], ['-l', '-']]) {
      const r = await execa('man', args, { env, input: page, reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^HVPLUG\(1\) +User Commands +HVPLUG\(1\)/);
      expect(r.stdout).toContain('hvplug [global options] attach-device <vm> <device.json> [options]');
    }
  });
});
