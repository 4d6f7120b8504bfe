import type { FlagSpec, FlagTable } from './args.js';
import type { Command, RawCommand } from './command.js';
import { GLOBAL_FLAGS } from './context.js';
import { table, wrap } from './output.js';

const WIDTH = 100;

function flagRows(flags: FlagTable): string[][] {
  return Object.entries(flags).map(([name, f]: [string, FlagSpec]) => {
    const short = f.short ? `-${f.short}, ` : '';
    return [`${short}--${name}${f.value ? ` ${f.value}` : ''}`, f.help];
  });
}

function paragraph(text: string): string {
  return wrap(text.split(/\s+/), WIDTH, '');
}

/** The globals a command accepts after its name: those it does not redefine. */
export function globalsFor(command: Command): FlagTable {
  return Object.fromEntries(Object.entries(GLOBAL_FLAGS).filter(([name]) => !Object.hasOwn(command.flags, name)));
}

export function commandHelp(command: Command): string {
  const args = command.positionals.map((p) => (p.required ? `<${p.name}>` : `[${p.name}]`)).join(' ');
  const lines = [`Usage: hvplug [global options] ${command.name}${args ? ` ${args}` : ''} [options]`, '', paragraph(command.description)];
  if (command.positionals.length) lines.push('', 'Arguments:', table(command.positionals.map((p) => [`<${p.name}>`, p.help]), '  '));
  lines.push('', 'Options:', table(flagRows(command.flags), '  '));
  lines.push('', 'Global options:', table(flagRows(globalsFor(command)), '  '));
  return lines.join('\n');
}

export function generalHelp(commands: readonly Command[], raw: readonly RawCommand[] = []): string {
  return [
    'Usage: hvplug [global options] <command> [options]',
    '',
    paragraph('Drives hypervisors through out-of-process plugins that speak JSON-RPC on their stdin/stdout.'),
    '',
    'Commands:',
    table([...[...commands, ...raw].map((c) => [c.name, c.summary]), ['help [command]', 'show help for a command']], '  '),
    '',
    'Global options:',
    table(flagRows(GLOBAL_FLAGS), '  '),
    '',
    'Logs go to stderr, output to stdout. Exit status: 0 success, 1 runtime error, 2 bad command line.',
    'Run `hvplug <command> --help` for the options of a command.',
  ].join('\n');
}
