import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import * as z from 'zod/mini';
import { UsageError } from './errors.js';

export { parseFlags, splitCommand, type FlagSpec, type FlagTable, type RawArgs, type RawValue } from './flags.js';

/**
 * Validates raw flags with a zod schema whose keys are flag names (or positional names), turning the
 * first issue into a one-line UsageError that names the flag.
 */
export function validate<S extends z.core.$ZodType>(schema: S, input: Record<string, unknown>, positionals: readonly string[] = []): z.output<S> {
  const parsed = z.safeParse(schema, input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const key = String(issue?.path[0] ?? '');
  const shown = positionals.includes(key) ? `<${key}>` : `--${key}`;
  throw new UsageError(`${shown}: ${issue?.message ?? 'invalid value'}`);
}

// Value schemas for flags. Each takes the raw string and explains a bad value in words a user reads.

/** Fails a flag value in a transform with `message`: the issue classic zod's ctx.addIssue made (zod/mini's transforms have no addIssue). */
export function rejectValue(ctx: z.core.ParsePayload, message: string): never {
  ctx.issues.push({ code: 'custom', message, input: ctx.value });
  return z.NEVER;
}

export function intValue(min: number, max: number): z.ZodMiniType<number, string> {
  return z.pipe(
    z.string(),
    z.transform((s, ctx) => {
      const n = /^[+-]?\d+$/.test(s.trim()) ? Number(s) : Number.NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) return rejectValue(ctx, `expected a whole number from ${min} to ${max}, got "${s}"`);
      return n;
    }),
  );
}

/** Seconds, fractions allowed, at most a day: a typo like 3000000 is caught rather than waited out. */
export function secondsValue(): z.ZodMiniType<number, string> {
  return z.pipe(
    z.string(),
    z.transform((s, ctx) => {
      const n = /^\d+(\.\d+)?$/.test(s.trim()) ? Number(s) : Number.NaN;
      if (!(n > 0) || n > 86_400) return rejectValue(ctx, `expected a number of seconds greater than 0 and at most 86400, got "${s}"`);
      return n;
    }),
  );
}

/**
 * A delay in seconds (fractions allowed) given as milliseconds, from 0 to `maxMs`: for a setting where 0 has a
 * meaning of its own (never), unlike secondsValue's deadlines.
 */
export function delayValue(maxMs: number, zero: string): z.ZodMiniType<number, string> {
  const maxSeconds = Math.floor(maxMs / 1000);
  return z.pipe(
    z.string(),
    z.transform((s, ctx) => {
      const n = /^\d+(\.\d+)?$/.test(s.trim()) ? Number(s) : Number.NaN;
      if (!(n >= 0) || n > maxSeconds) return rejectValue(ctx, `expected a number of seconds from 0 (${zero}) to ${maxSeconds}, got "${s}"`);
      return Math.round(n * 1000);
    }),
  );
}

function pathValue(kind: 'file' | 'directory'): z.ZodMiniType<string, string> {
  return z.pipe(
    z.string(),
    z.transform((s, ctx) => {
      if (s === '') return rejectValue(ctx, `expected a ${kind} path, got an empty string`);
      const p = resolve(s);
      let isKind: boolean;
      try {
        const st = statSync(p);
        isKind = kind === 'file' ? st.isFile() : st.isDirectory();
      } catch (err) {
        return rejectValue(ctx, `cannot use ${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? `no such ${kind}` : (err as Error).message}`);
      }
      if (!isKind) return rejectValue(ctx, `${p} is not a ${kind}`);
      return p;
    }),
  );
}

/** An existing regular file, made absolute (the protocol wants absolute paths). */
export const existingFile = (): z.ZodMiniType<string, string> => pathValue('file');
export const existingDir = (): z.ZodMiniType<string, string> => pathValue('directory');

/** A directory hvplug may create: only made absolute. */
export function dirPath(): z.ZodMiniType<string, string> {
  return z.pipe(
    z.string().check(z.minLength(1, { error: 'expected a directory path, got an empty string' })),
    z.transform((s) => resolve(s)),
  );
}

export function nonEmpty(what: string): z.ZodMiniType<string, string> {
  return z.string().check(z.minLength(1, { error: `expected ${what}, got an empty string` }));
}

export const flagSet = (): z.ZodMiniType<boolean, boolean | undefined> =>
  z.pipe(
    z.optional(z.boolean()),
    z.transform((b) => b === true),
  );
