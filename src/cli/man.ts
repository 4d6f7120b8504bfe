import * as z from 'zod';
import { HOST_VERSION } from '../core/version.js';
import { defineCommand, type Command } from './command.js';
import { EXIT_OK } from './errors.js';
import type { FlagSpec, FlagTable } from './flags.js';
import { GLOBAL_FLAGS } from './global-flags.js';
import { ABOUT, argumentRows, EXIT_STATUS, flagTerm, globalsFor, HELP_ENTRY, STREAMS, usageLines } from './help.js';

/**
 * The manual page hvplug(1), in roff (man macros), generated from the command definitions as help and completion are:
 * a command or flag added to the CLI is in the page without anyone editing it.
 */

/**
 * Text as roff prints it: a backslash is roff's escape, a minus that should stay one (--flag, to copy and paste) is
 * \-, and anything not printable ASCII is named by its code point, so that the page reads the same whatever the
 * reader's locale and needs no preprocessor. Whitespace runs become one space: roff fills lines itself.
 */
function esc(text: string): string {
  let out = '';
  for (const ch of text.replace(/\s+/g, ' ')) {
    const cp = ch.codePointAt(0) ?? 0x20;
    if (ch === '\\') out += '\\e';
    else if (ch === '-') out += '\\-';
    else if (cp < 0x20 || cp > 0x7e) out += `\\[u${cp.toString(16).toUpperCase().padStart(4, '0')}]`;
    else out += ch;
  }
  return out;
}

/** A text line: one that starts with a dot or an apostrophe would be read as a request. */
function line(roff: string): string {
  const trimmed = roff.trim();
  return /^[.']/.test(trimmed) ? `\\&${trimmed}` : trimmed;
}

const bold = (text: string): string => `\\fB${esc(text)}\\fR`;
const italic = (text: string): string => `\\fI${esc(text)}\\fR`;

/** Paragraphs separated by a blank line in the source stay separate, as in help. */
function paragraphs(text: string): string[] {
  return text
    .split(/\n\s*\n/)
    .map((p) => p.trim())
    .filter(Boolean)
    .flatMap((p, i) => [...(i ? ['.PP'] : []), line(esc(p))]);
}

/** What a usage line names rather than spells: [global options], [options], [command], <vm>. */
const PLACEHOLDER = /^(?:\[[a-z ]+\]|<[^>]+>)$/;

/** A usage line: the words typed as they are bold, the placeholders italic. */
function usage(text: string): string {
  const parts = text.split(/(\[[a-z ]+\]|<[^>]+>)/).filter(Boolean);
  return line(parts.map((p) => (PLACEHOLDER.test(p) ? italic(p) : p.replace(/\S+/g, bold))).join(''));
}

function flagItem(name: string, f: FlagSpec): string[] {
  const t = flagTerm(name, f);
  const term = `${t.short ? `${bold(t.short)}, ` : ''}${bold(t.long)}${t.value ? ` ${italic(t.value)}` : ''}`;
  return ['.TP', line(term), line(esc(f.help))];
}

const flagItems = (table: FlagTable): string[] => Object.entries(table).flatMap(([name, f]) => flagItem(name, f));

/** A labelled group of items inside a command's section (Arguments, Options). */
const labelled = (label: string, items: string[]): string[] => (items.length ? ['.PP', bold(label), ...items] : []);

function commandSection(command: Command): string[] {
  const refused = Object.entries(command.misplaced ?? {});
  const globalsNote = refused.length
    ? `The global options are accepted after the command too, except ${refused.map(([name, why]) => `--${name} (${why})`).join(', ')}.`
    : Object.keys(globalsFor(command)).length
      ? ''
      : 'No global option is accepted after the command.';
  return [
    `.SS ${esc(command.name)}`,
    ...usageLines(command).flatMap((u, i) => [i ? '.br' : '.PP', usage(u)]),
    '.PP',
    ...paragraphs(command.description),
    ...labelled(
      'Arguments',
      argumentRows(command).flatMap(([term, help]) => ['.TP', line(italic(term)), line(esc(help))]),
    ),
    ...labelled('Options', flagItems(command.flags)),
    ...(globalsNote ? ['.PP', line(esc(globalsNote))] : []),
  ];
}

/** The page, for these commands (all of them, in the order help lists them). */
export function manPage(commands: readonly Command[], version = HOST_VERSION): string {
  const about = ABOUT.charAt(0).toLowerCase() + ABOUT.slice(1).replace(/\.$/, '');
  const lines = [
    `.TH HVPLUG 1 "" "hvplug ${version}" "User Commands"`,
    // Left-adjusted and unhyphenated: option names and paths are copied from a page, and must read as they are typed.
    '.ad l',
    '.nh',
    '.SH NAME',
    `hvplug \\- ${esc(about)}`,
    '.SH SYNOPSIS',
    usage('hvplug [global options] <command> [options]'),
    '.br',
    usage(`hvplug ${HELP_ENTRY.name} [command]`),
    '.SH DESCRIPTION',
    line(esc(ABOUT)),
    line(esc(`${STREAMS} Each command is described under COMMANDS as hvplug <command> --help describes it.`)),
    '.SH GLOBAL OPTIONS',
    line(esc('Accepted before the command, and after it unless the command has a flag of the same name.')),
    ...flagItems(GLOBAL_FLAGS),
    '.SH COMMANDS',
    ...commands.flatMap(commandSection),
    `.SS ${HELP_ENTRY.name}`,
    '.PP',
    usage(`hvplug ${HELP_ENTRY.name} ${HELP_ENTRY.args}`),
    '.PP',
    line(esc(`${HELP_ENTRY.summary.charAt(0).toUpperCase()}${HELP_ENTRY.summary.slice(1)}; without one, the overview of all commands.`)),
    '.SH EXIT STATUS',
    ...EXIT_STATUS.flatMap(([code, what]) => ['.TP', bold(String(code)), line(esc(what))]),
  ];
  return `${lines.join('\n')}\n`;
}

export function manCommand(list: () => Promise<readonly Command[]>): Command {
  return defineCommand({
    name: 'man',
    summary: 'print the hvplug(1) manual page (roff), generated from the commands: hvplug man | man -l -',
    description:
      'Prints the manual page hvplug(1) in roff, generated from the commands of this hvplug as their help is: every ' +
      'command with its usage, arguments and options, the global options and the exit status. Read it with ' +
      'hvplug man | man -l -, or install it: hvplug man > /usr/local/share/man/man1/hvplug.1. The package ships the ' +
      'same page (dist/man/hvplug.1, its "man" in package.json), which npm install -g links for man hvplug.',
    flags: {},
    positionals: [],
    options: z.object({}),
    async action() {
      process.stdout.write(manPage(await list()));
      return EXIT_OK;
    },
  });
}
