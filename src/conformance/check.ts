import type { MethodName } from 'hvplug/protocol';
import type { Fixture } from './fixture.js';

/** A check as the suite defines it; the runner turns it into a CheckResult. */
export interface CheckDef {
  id: string;
  title: string;
  verifies: string;
  /** Gated methods the check calls; the first one not advertised skips it, with that as the reason. */
  needs?: readonly MethodName[];
  /** Skip for a reason known from the capabilities alone. */
  skip?: string;
  /** Judges what the whole run saw (the wire, the event streams): runs after every other check. */
  late?: boolean;
  run(fx: Fixture): Promise<void>;
}

export function groupOf(id: string): string {
  return id.split('.')[0] ?? id;
}

/** The plugin did something the protocol forbids. */
export class CheckFailure extends Error {
  override readonly name = 'CheckFailure';
}

/** Found out while running that the check does not apply (e.g. no device type can be cold-plugged). */
export class SkipCheck extends Error {
  override readonly name = 'SkipCheck';
}

export function fail(message: string): never {
  throw new CheckFailure(message);
}

export function expect(condition: unknown, message: string): asserts condition {
  if (!condition) fail(message);
}

export function describeError(err: unknown): string {
  if (err instanceof Error) return err.name && err.name !== 'Error' ? `${err.name}: ${err.message}` : err.message;
  return String(err);
}

/** The error a call must fail with, by its typed code; anything else (success included) fails the check. */
export async function expectRejection(
  call: Promise<unknown>,
  code: string | readonly string[],
  what: string,
): Promise<Error & { code: string }> {
  const codes: readonly string[] = typeof code === 'string' ? [code] : code;
  const expected = codes.join(' or ');
  let result: unknown;
  try {
    result = await call;
  } catch (err) {
    const got = (err as { code?: unknown }).code;
    if (err instanceof Error && typeof got === 'string' && codes.includes(got)) return err as Error & { code: string };
    fail(`${what}: expected a ${expected} error, got ${describeError(err)}`);
  }
  fail(`${what}: expected a ${expected} error, but it succeeded with ${JSON.stringify(result)}`);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Polls until `probe` answers true or the deadline passes; answers whether it did. */
export async function within(ms: number, probe: () => boolean | Promise<boolean>, signal?: AbortSignal): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= end) return false;
    await sleep(Math.min(25, Math.max(1, end - Date.now())), signal);
  }
}
