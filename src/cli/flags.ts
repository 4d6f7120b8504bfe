import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

// The command line's syntax, without zod: main.ts splits and parses with it before it knows which command (and
// which of its modules) runs, so that --version and help load nothing more.

export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
  /** Placeholder shown in help, e.g. `<path>`. */
  readonly value?: string;
  readonly help: string;
}

export type FlagTable = Readonly<Record<string, FlagSpec>>;

export type RawValue = string | boolean | string[];

export interface RawArgs {
  flags: Record<string, RawValue>;
  positionals: string[];
  /** The positionals after `--` (also in positionals): a command that takes a command line of its own reads them here. */
  rest?: string[];
}

type ParseArgsOptions = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

function parseArgsOptions(table: FlagTable): ParseArgsOptions {
  const options: NonNullable<ParseArgsOptions> = {};
  for (const [name, spec] of Object.entries(table)) {
    options[name] = { type: spec.type, multiple: spec.multiple ?? false, ...(spec.short ? { short: spec.short } : {}) };
  }
  return options;
}

function tokensOf(args: readonly string[], table: FlagTable): NonNullable<ReturnType<typeof parseArgs>['tokens']> {
  // Non-strict on purpose: node's strict errors are long and generic; the checks below name the flag.
  return parseArgs({ args: [...args], options: parseArgsOptions(table), strict: false, allowPositionals: true, tokens: true }).tokens;
}

/**
 * Splits `[global options] <command> [command options]`. Everything before the first positional is
 * global, so a command may reuse a global flag's name (`hvplug --config plugins.toml run --config vm.json`).
 */
export function splitCommand(args: readonly string[], globals: FlagTable): { before: string[]; command?: string; after: string[] } {
  const first = tokensOf(args, globals).find((t) => t.kind === 'positional');
  if (!first) return { before: [...args], after: [] };
  return { before: args.slice(0, first.index), command: first.value, after: args.slice(first.index + 1) };
}

/** Parses flags against a table; every mistake is a UsageError naming the flag. */
export function parseFlags(args: readonly string[], table: FlagTable): RawArgs {
  const flags: Record<string, RawValue> = {};
  const positionals: string[] = [];
  let rest: string[] | undefined;
  for (const t of tokensOf(args, table)) {
    if (t.kind === 'positional') {
      positionals.push(t.value);
      rest?.push(t.value);
      continue;
    }
    if (t.kind === 'option-terminator') {
      rest = [];
      continue;
    }
    const spec = Object.hasOwn(table, t.name) ? table[t.name] : undefined;
    if (!spec) throw new UsageError(`unknown option ${t.rawName}`);
    const shown = `--${t.name}`;
    if (spec.type === 'boolean') {
      if (t.value !== undefined) throw new UsageError(`${shown} takes no value (got "${t.value}")`);
      flags[t.name] = true;
      continue;
    }
    if (t.value === undefined) throw new UsageError(`${shown} needs a value${spec.value ? ` ${spec.value}` : ''}`);
    // `--kernel --json` would otherwise take "--json" as the kernel; negative numbers still get through.
    if (!t.inlineValue && /^-[^\d]/.test(t.value)) {
      throw new UsageError(`${shown} needs a value${spec.value ? ` ${spec.value}` : ''}, got the option ${t.value} (write ${shown}=${t.value} if you meant it)`);
    }
    const prev = flags[t.name];
    if (spec.multiple) flags[t.name] = [...(Array.isArray(prev) ? prev : []), t.value];
    else if (prev !== undefined) throw new UsageError(`${shown} given more than once`);
    else flags[t.name] = t.value;
  }
  return { flags, positionals, ...(rest && { rest }) };
}
