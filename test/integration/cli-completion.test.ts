import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLI, ensureCliBuilt, tempDir } from '../helpers.js';

/**
 * `hvplug completion` through the built CLI. The bash script is sourced in a real bash, which is asked to complete as
 * it would on Tab: COMP_WORDS and COMP_CWORD set as readline sets them, then the completion function called.
 */

let work: string;
let bashScript: string;

beforeAll(async () => {
  await ensureCliBuilt();
  work = await tempDir('hvplug-completion-');
  bashScript = join(work, 'hvplug.bash');
  await writeFile(bashScript, (await execa('node', [CLI, 'completion', 'bash'])).stdout);
}, 120_000);

/** What bash offers for the command line `words`, the last word being the one completed. */
async function complete(...words: string[]): Promise<string[]> {
  const quoted = words.map((w) => `'${w.replace(/'/g, "'\\''")}'`).join(' ');
  const script = `source '${bashScript}'; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _hvplug; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = await execa('bash', ['--norc', '--noprofile', '-c', script], { cwd: work });
  return r.stdout.split('\n').filter((l) => l !== '');
}

/** The command names `hvplug help` lists. */
async function helpCommands(): Promise<string[]> {
  const help = (await execa('node', [CLI, 'help'])).stdout;
  const section = help.split('Commands:\n')[1]?.split('\n\n')[0] ?? '';
  return section
    .split('\n')
    .map((l) => /^ {2}(\S+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined);
}

describe('hvplug completion bash', () => {
  it('completes a command name, also after global options and their values, and after help', async () => {
    expect(await complete('hvplug', 'pa')).toEqual(['pause']);
    expect(await complete('hvplug', '--state-dir', '/tmp/x', '--log-level', 'info', 'pa')).toEqual(['pause']);
    expect((await complete('hvplug', 'help', 'res')).sort()).toEqual(['resize', 'restore', 'resume']);
    // Every command help lists, and nothing else: the script comes from the same definitions.
    const offered = await complete('hvplug', '');
    expect([...offered].sort()).toEqual([...(await helpCommands()), 'help'].filter((n, i, a) => a.indexOf(n) === i).sort());
    expect(offered).toEqual(expect.arrayContaining(['logs', 'events', 'completion', 'conformance']));
  });

  it("offers a command's own flags and the globals it accepts, not another command's", async () => {
    const logs = await complete('hvplug', 'logs', '--');
    expect(logs).toEqual(expect.arrayContaining(['--follow', '--tail', '--state-dir', '--log-level', '--help']));
    expect(logs).not.toContain('--plugin');
    expect(await complete('hvplug', 'logs', 'web', '-')).toContain('-f');
    expect(await complete('hvplug', 'run', '--de')).toEqual(['--detach']);
    expect(await complete('hvplug', 'ps', '--f')).toEqual(['--filter']);
    // Before the command, only the global options.
    expect(await complete('hvplug', '--')).toEqual(['--config', '--plugin-dir', '--state-dir', '--runtime-dir', '--log-level', '--unreachable-lost-after', '--help', '--version']);
  });

  it("completes a flag's value by what it is: files, directories, log levels, or nothing", async () => {
    await writeFile(join(work, 'vm-small.json'), '{}');
    expect(await complete('hvplug', 'run', '--vm-config', 'vm-s')).toEqual(['vm-small.json']);
    expect(await complete('hvplug', '--log-level', 'd')).toEqual(['debug']);
    // A value nobody can guess (a name): no flags offered in its place.
    expect(await complete('hvplug', 'run', '--name', '')).toEqual([]);
    expect(await complete('hvplug', 'logs', '--tail', '')).toEqual([]);
  });
});

describe('hvplug completion zsh and fish', () => {
  it('name every command with its summary, and every flag of a command under it', async () => {
    const zsh = (await execa('node', [CLI, 'completion', 'zsh'])).stdout;
    expect(zsh.split('\n')[0]).toBe('#compdef hvplug');
    expect(zsh).toContain("'pause:pause a running VM from the state directory'");
    expect(zsh).toMatch(/^ {6}logs\)\n {8}_arguments -s .*'--follow\[.*'-f\[.*'--tail=\[[^\]]*\]:value: '/m);
    expect(zsh).toContain("'*--plugin-dir=[also look for hvplug-plugin-<name> executables here]:directory:_files -/'");

    const fish = (await execa('node', [CLI, 'completion', 'fish'])).stdout;
    expect(fish).toContain("complete -c hvplug -n '__fish_use_subcommand' -a pause -d 'pause a running VM from the state directory'");
    expect(fish).toMatch(/^complete -c hvplug -n '__fish_seen_subcommand_from logs' -l follow -s f -d /m);
    expect(fish).toMatch(/^complete -c hvplug -n '__fish_seen_subcommand_from logs' -l tail -x -d /m);
    expect(fish).toMatch(/^complete -c hvplug -n '__fish_seen_subcommand_from run' -l vm-config -r -F -d /m);
  });

  it('refuses a shell it does not know, as a usage error', async () => {
    const r = await execa('node', [CLI, 'completion', 'tcsh'], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('<shell>: expected bash, zsh or fish, got "tcsh"');
  });
});
