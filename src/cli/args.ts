import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import * as z from 'zod';
import { UsageError } from './errors.js';

export { parseFlags, splitCommand, type FlagSpec, type FlagTable, type RawArgs, type RawValue } from './flags.js';

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

/**
 * A delay in seconds (fractions allowed) given as milliseconds, from 0 to `maxMs`: for a setting where 0 has a
 * meaning of its own (never), unlike secondsValue's deadlines.
 */
export function delayValue(maxMs: number, zero: string): z.ZodType<number, string> {
  const maxSeconds = Math.floor(maxMs / 1000);
  return z.string().transform((s, ctx) => {
    const n = /^\d+(\.\d+)?$/.test(s.trim()) ? Number(s) : Number.NaN;
    if (!(n >= 0) || n > maxSeconds) {
      ctx.addIssue({ code: 'custom', message: `expected a number of seconds from 0 (${zero}) to ${maxSeconds}, got "${s}"` });
      return z.NEVER;
    }
    return Math.round(n * 1000);
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
