import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { UsageError } from './errors.js';

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
  for (const t of tokensOf(args, table)) {
    if (t.kind === 'positional') {
      positionals.push(t.value);
      continue;
    }
    if (t.kind === 'option-terminator') continue;
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
  return { flags, positionals };
}

/**
 * Validates raw flags with a zod schema whose keys are flag names (or positional names), turning the
 * first issue into a one-line UsageError that names the flag.
 */
export function validate<S extends z.ZodType>(schema: S, input: Record<string, unknown>, positionals: readonly string[] = []): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const key = String(issue?.path[0] ?? '');
  const shown = positionals.includes(key) ? `<${key}>` : `--${key}`;
  throw new UsageError(`${shown}: ${issue?.message ?? 'invalid value'}`);
}

// Value schemas for flags. Each takes the raw string and explains a bad value in words a user reads.

export function intValue(min: number, max: number): z.ZodType<number, string> {
  return z.string().transform((s, ctx) => {
    const n = /^[+-]?\d+$/.test(s.trim()) ? Number(s) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `expected a whole number from ${min} to ${max}, got "${s}"` });
      return z.NEVER;
    }
    return n;
  });
}

/** Seconds, fractions allowed, at most a day: a typo like 3000000 is caught rather than waited out. */
export function secondsValue(): z.ZodType<number, string> {
  return z.string().transform((s, ctx) => {
    const n = /^\d+(\.\d+)?$/.test(s.trim()) ? Number(s) : Number.NaN;
    if (!(n > 0) || n > 86_400) {
      ctx.addIssue({ code: 'custom', message: `expected a number of seconds greater than 0 and at most 86400, got "${s}"` });
      return z.NEVER;
    }
    return n;
  });
}

function pathValue(kind: 'file' | 'directory'): z.ZodType<string, string> {
  return z.string().transform((s, ctx) => {
    if (s === '') {
      ctx.addIssue({ code: 'custom', message: `expected a ${kind} path, got an empty string` });
      return z.NEVER;
    }
    const p = resolve(s);
    let isKind: boolean;
    try {
      const st = statSync(p);
      isKind = kind === 'file' ? st.isFile() : st.isDirectory();
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `cannot use ${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? `no such ${kind}` : (err as Error).message}` });
      return z.NEVER;
    }
    if (!isKind) {
      ctx.addIssue({ code: 'custom', message: `${p} is not a ${kind}` });
      return z.NEVER;
    }
    return p;
  });
}

/** An existing regular file, made absolute (the protocol wants absolute paths). */
export const existingFile = (): z.ZodType<string, string> => pathValue('file');
export const existingDir = (): z.ZodType<string, string> => pathValue('directory');

/** A directory hvplug may create: only made absolute. */
export function dirPath(): z.ZodType<string, string> {
  return z.string().min(1, { error: 'expected a directory path, got an empty string' }).transform((s) => resolve(s));
}

export function nonEmpty(what: string): z.ZodType<string, string> {
  return z.string().min(1, { error: `expected ${what}, got an empty string` });
}

export const flagSet = (): z.ZodType<boolean, boolean | undefined> => z.boolean().optional().transform((b) => b === true);
