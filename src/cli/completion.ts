import * as z from 'zod';
import { InitializeParams } from 'hvplug/protocol';
import type { FlagSpec, FlagTable } from './args.js';
import { defineCommand, type Command } from './command.js';
import { GLOBAL_FLAGS } from './context.js';
import { EXIT_OK } from './errors.js';
import { globalsFor, HELP_ENTRY } from './help.js';

/**
 * Shell completion scripts, generated from the command definitions (names, summaries, flags and what their values are),
 * so that a command or flag added to the CLI is completed without anyone editing a script.
 */

const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

/** What a flag's value is completed with, judged from its placeholder. */
type ValueKind = 'file' | 'dir' | 'level' | 'other';

interface Flag {
  readonly long: string;
  readonly short?: string;
  readonly takesValue: boolean;
  readonly repeatable: boolean;
  readonly kind: ValueKind;
  readonly help: string;
}

interface Spec {
  readonly name: string;
  readonly summary: string;
  /** The command's flags and the globals it accepts after its name. */
  readonly flags: readonly Flag[];
}

const LEVELS = InitializeParams.shape.logLevel.def.innerType.options;

function kindOf(spec: FlagSpec): ValueKind {
  const v = spec.value ?? '';
  if (v === '<level>') return 'level';
  if (/dir/.test(v)) return 'dir';
  if (/file|path/.test(v)) return 'file';
  return 'other';
}

function flagsOf(table: FlagTable): Flag[] {
  return Object.entries(table).map(([long, f]) => ({
    long,
    ...(f.short ? { short: f.short } : {}),
    takesValue: f.type === 'string',
    repeatable: f.multiple === true,
    kind: kindOf(f),
    help: f.help,
  }));
}

/** The first clause of a help text, short enough for a completion menu. */
function brief(text: string): string {
  const first = text.split(/[;(]|\. /)[0]?.trim() ?? '';
  return first.length > 70 ? `${first.slice(0, 67)}...` : first;
}

function specs(commands: readonly Command[]): Spec[] {
  return [
    ...commands.map((c) => ({ name: c.name, summary: c.summary, flags: [...flagsOf(c.flags), ...flagsOf(globalsFor(c))] })),
    { name: HELP_ENTRY.name, summary: HELP_ENTRY.summary, flags: [] },
  ];
}

const words = (flag: Flag): string[] => [`--${flag.long}`, ...(flag.short ? [`-${flag.short}`] : [])];

function bashValue(kind: ValueKind): string {
  switch (kind) {
    case 'file':
      return 'COMPREPLY=($(compgen -f -- "$cur"))';
    case 'dir':
      return 'COMPREPLY=($(compgen -d -- "$cur"))';
    case 'level':
      return `COMPREPLY=($(compgen -W "${LEVELS.join(' ')}" -- "$cur"))`;
    case 'other':
      return 'COMPREPLY=()';
  }
}

export function bashScript(all: readonly Spec[]): string {
  const globals = flagsOf(GLOBAL_FLAGS);
  const globalValued = globals.filter((f) => f.takesValue).flatMap(words);
  const valueCases = [
    ...globals.filter((f) => f.takesValue).map((f) => ({ cmd: '', f })),
    ...all.flatMap((s) => s.flags.filter((f) => f.takesValue).map((f) => ({ cmd: s.name, f }))),
  ].map(({ cmd, f }) => `    ${words(f).map((w) => `"${cmd} ${w}"`).join('|')}) ${bashValue(f.kind)}; return ;;`);
  const flagCases = all.map((s) => `    ${s.name}) flags="${s.flags.flatMap(words).join(' ')}" ;;`);
  return [
    '# hvplug completion for bash: eval "$(hvplug completion bash)" in ~/.bashrc, or save it as',
    '# ~/.local/share/bash-completion/completions/hvplug',
    '_hvplug() {',
    '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" cmd="" flags="" i',
    '  # The command is the first word that is neither an option nor the value of a global option before it.',
    '  for ((i = 1; i < COMP_CWORD; i++)); do',
    '    case "${COMP_WORDS[i]}" in',
    `      ${globalValued.join('|')}) ((i++)) ;;`,
    '      -*) ;;',
    '      *) cmd="${COMP_WORDS[i]}"; break ;;',
    '    esac',
    '  done',
    '  case "$cmd $prev" in',
    ...valueCases,
    '  esac',
    '  case "$cmd" in',
    `    "") flags="${globals.flatMap(words).join(' ')}" ;;`,
    ...flagCases,
    '  esac',
    '  if [[ "$cur" == -* ]]; then',
    '    COMPREPLY=($(compgen -W "$flags" -- "$cur"))',
    '  elif [[ -z "$cmd" || "$cmd" == help ]]; then',
    `    COMPREPLY=($(compgen -W "${all.map((s) => s.name).join(' ')}" -- "$cur"))`,
    '  else',
    '    COMPREPLY=()',
    '  fi',
    '}',
    'complete -F _hvplug hvplug',
    '',
  ].join('\n');
}

/** Text inside a zsh single-quoted _arguments spec: quotes closed and reopened, brackets and colons escaped. */
const zq = (s: string): string => s.replace(/\\/g, '\\\\').replace(/'/g, "'\\''").replace(/([[\]:])/g, '\\$1');

function zshValue(kind: ValueKind): string {
  switch (kind) {
    case 'file':
      return ':file:_files';
    case 'dir':
      return ':directory:_files -/';
    case 'level':
      return `:level:(${LEVELS.join(' ')})`;
    case 'other':
      return ':value: ';
  }
}

function zshFlags(flags: readonly Flag[]): string[] {
  return flags.flatMap((f) =>
    words(f).map((w) => `'${f.repeatable ? '*' : ''}${w}${f.takesValue && w.startsWith('--') ? '=' : ''}[${zq(brief(f.help))}]${f.takesValue ? zshValue(f.kind) : ''}'`),
  );
}

export function zshScript(all: readonly Spec[]): string {
  const cases = all.map((s) => [`      ${s.name})`, `        _arguments -s ${zshFlags(s.flags).join(' ')} '*: :' ;;`].join('\n'));
  return [
    '#compdef hvplug',
    '# hvplug completion for zsh: save it as _hvplug in a directory of $fpath, or eval "$(hvplug completion zsh)" after compinit',
    '_hvplug() {',
    '  local context state state_descr line',
    '  typeset -A opt_args',
    '  local -a commands',
    `  commands=(${all.map((s) => `'${zq(s.name)}:${s.summary.replace(/'/g, "'\\''")}'`).join(' ')})`,
    `  _arguments -C ${zshFlags(flagsOf(GLOBAL_FLAGS)).join(' ')} '1: :->command' '*:: :->args'`,
    '  case $state in',
    "    command) _describe -t commands 'hvplug command' commands ;;",
    '    args)',
    '      case $words[1] in',
    ...cases,
    '      esac ;;',
    '  esac',
    '}',
    'if [[ $zsh_eval_context[-1] == loadautofunc ]]; then _hvplug "$@"; else compdef _hvplug hvplug; fi',
    '',
  ].join('\n');
}

/** A fish single-quoted string. */
const fq = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

function fishValue(kind: ValueKind): string {
  switch (kind) {
    case 'file':
      return ' -r -F';
    case 'dir':
      return " -x -a '(__fish_complete_directories)'";
    case 'level':
      return ` -x -a ${fq(LEVELS.join(' '))}`;
    case 'other':
      return ' -x';
  }
}

function fishFlag(condition: string, f: Flag): string {
  return `complete -c hvplug -n ${fq(condition)} -l ${f.long}${f.short ? ` -s ${f.short}` : ''}${f.takesValue ? fishValue(f.kind) : ''} -d ${fq(brief(f.help))}`;
}

export function fishScript(all: readonly Spec[]): string {
  const names = all.map((s) => s.name).join(' ');
  return [
    '# hvplug completion for fish: save it as ~/.config/fish/completions/hvplug.fish, or hvplug completion fish | source',
    'complete -c hvplug -f',
    ...all.map((s) => `complete -c hvplug -n '__fish_use_subcommand' -a ${s.name} -d ${fq(s.summary)}`),
    ...flagsOf(GLOBAL_FLAGS).map((f) => fishFlag('__fish_use_subcommand', f)),
    ...all.flatMap((s) => s.flags.map((f) => fishFlag(`__fish_seen_subcommand_from ${s.name}`, f))),
    `complete -c hvplug -n '__fish_seen_subcommand_from help' -a ${fq(names)}`,
    '',
  ].join('\n');
}

/** The command, given the whole command list (main.ts's, read when it runs: this module cannot import main.ts). */
export function completionCommand(list: () => Promise<readonly Command[]>): Command {
  return defineCommand({
    name: 'completion',
    summary: 'print a shell completion script (bash, zsh or fish)',
    description:
      'Prints a script that completes hvplug commands, their options and option values (files, directories, log ' +
      'levels) in bash, zsh or fish, generated from the commands of this hvplug. bash: eval "$(hvplug completion bash)" ' +
      'in ~/.bashrc. zsh: hvplug completion zsh > "${fpath[1]}/_hvplug". fish: hvplug completion fish > ' +
      '~/.config/fish/completions/hvplug.fish.',
    flags: {},
    positionals: [{ name: 'shell', required: true, help: 'bash, zsh or fish' }],
    options: z.object({ shell: z.enum(SHELLS, { error: (iss) => `expected bash, zsh or fish, got "${String(iss.input)}"` }) }),
    async action({ shell }: { shell: Shell }) {
      const all = specs(await list());
      process.stdout.write(shell === 'bash' ? bashScript(all) : shell === 'zsh' ? zshScript(all) : fishScript(all));
      return EXIT_OK;
    },
  });
}
