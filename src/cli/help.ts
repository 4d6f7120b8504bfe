import type { Command } from './command.js';
import type { FlagSpec, FlagTable } from './flags.js';
import { GLOBAL_FLAGS } from './global-flags.js';
import { wrap } from './output.js';

/** The terminal's width when stdout is one, else $COLUMNS, else 80; never so narrow that nothing fits. */
function width(): number {
  const fromEnv = Number.parseInt(process.env.COLUMNS ?? '', 10);
  const columns = process.stdout.isTTY && process.stdout.columns ? process.stdout.columns : Number.isFinite(fromEnv) ? fromEnv : 80;
  return Math.max(40, Math.min(columns, 120));
}

/** What the CLI does, for the overview and the manual page's NAME and DESCRIPTION. */
export const ABOUT = 'Drives hypervisors through out-of-process plugins that speak JSON-RPC on their stdin/stdout.';
export const STREAMS = 'Logs go to stderr, output to stdout.';
export const EXIT_STATUS = [
  [0, 'success'],
  [1, 'runtime error'],
  [2, 'bad command line'],
] as const;

/** `hvplug help`, which is no command of the table: the overview, the manual page and completion list it too. */
export const HELP_ENTRY = { name: 'help', args: '[command]', summary: 'show help for a command' } as const;

/** A flag as help shows it (`-f, --follow`, `--tail <lines>`): parts for a renderer that sets names and values apart. */
export function flagTerm(name: string, f: FlagSpec): { short?: string; long: string; value?: string } {
  return { ...(f.short ? { short: `-${f.short}` } : {}), long: `--${name}`, ...(f.value ? { value: f.value } : {}) };
}

function flagRows(flags: FlagTable): [string, string][] {
  return Object.entries(flags).map(([name, f]: [string, FlagSpec]) => {
    const t = flagTerm(name, f);
    return [`${t.short ? `${t.short}, ` : ''}${t.long}${t.value ? ` ${t.value}` : ''}`, f.help];
  });
}

/** Paragraphs separated by a blank line in the source stay separate. */
function paragraph(text: string): string {
  return text
    .split(/\n\s*\n/)
    .map((p) => wrap(p.split(/\s+/).filter(Boolean), width(), ''))
    .join('\n\n');
}

/**
 * Two columns, the second wrapped to the width under itself. A first column wider than a third of the
 * width puts its text on the next line instead, so the text keeps room to read.
 */
function columns(rows: readonly (readonly [string, string])[], indent = '  '): string {
  const total = width();
  const first = Math.max(...rows.map(([term]) => term.length));
  const gap = 2;
  const inline = first <= total / 3;
  const textIndent = inline ? indent.length + first + gap : indent.length + 4;
  const pad = ' '.repeat(textIndent);
  return rows
    .map(([term, text]) => {
      const body = wrap(text.split(/\s+/).filter(Boolean), Math.max(20, total - textIndent), pad);
      return inline ? `${indent}${term.padEnd(first + gap)}${body}` : `${indent}${term}\n${pad}${body}`;
    })
    .join('\n');
}

/** The globals a command accepts after its name: those it does not redefine or refuse there. */
export function globalsFor(command: Command): FlagTable {
  return Object.fromEntries(
    Object.entries(GLOBAL_FLAGS).filter(([name]) => !Object.hasOwn(command.flags, name) && !Object.hasOwn(command.misplaced ?? {}, name)),
  );
}

/** The ways to call a command, one a line. */
export function usageLines(command: Command): string[] {
  const args = command.positionals.map((p) => (p.required ? `<${p.name}>` : `[${p.name}]`)).join(' ');
  const rest = command.rest ? ` [-- ${command.rest.usage}]` : '';
  return [`hvplug [global options] ${command.name}${args ? ` ${args}` : ''} [options]${rest}`, ...(command.usage ?? [])];
}

/** A command's positionals and its command line after `--`, as term and text. */
export function argumentRows(command: Command): [string, string][] {
  const rows: [string, string][] = command.positionals.map((p) => [`<${p.name}>`, p.help]);
  if (command.rest) rows.push([`-- ${command.rest.usage}`, command.rest.help]);
  return rows;
}

export function commandHelp(command: Command): string {
  const lines = [`Usage: ${usageLines(command).join('\n       ')}`, '', paragraph(command.description)];
  const argRows = argumentRows(command);
  if (argRows.length) lines.push('', 'Arguments:', columns(argRows));
  if (Object.keys(command.flags).length) lines.push('', 'Options:', columns(flagRows(command.flags)));
  lines.push('', 'Global options:', columns(flagRows(globalsFor(command))));
  return lines.join('\n');
}

/** The overview: each command's name and summary, which main.ts has without loading any command. */
export function generalHelp(commands: readonly Pick<Command, 'name' | 'summary'>[]): string {
  return [
    'Usage: hvplug [global options] <command> [options]',
    '',
    paragraph(ABOUT),
    '',
    'Commands:',
    columns([...commands.map((c): [string, string] => [c.name, c.summary]), [`${HELP_ENTRY.name} ${HELP_ENTRY.args}`, HELP_ENTRY.summary]]),
    '',
    'Global options:',
    columns(flagRows(GLOBAL_FLAGS)),
    '',
    paragraph(`${STREAMS} Exit status: ${EXIT_STATUS.map(([code, what]) => `${code} ${what}`).join(', ')}.`),
    paragraph('Run `hvplug <command> --help` for the options of a command.'),
  ].join('\n');
}
