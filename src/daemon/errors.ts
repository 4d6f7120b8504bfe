import * as z from 'zod/mini';
// By name from zod's core: `z.core.$ZodError` would make esbuild keep the whole of z.core, its 60 locales with it.
import { $ZodError } from 'zod/v4/core';
import { ResponseError } from 'vscode-jsonrpc/node';
import { ErrorCode, errorCodeName, formatIssues, toIssues } from 'hvplug/protocol';
import { HvplugError } from '../errors/index.js';

/** Code of an HvplugError whose own code is not one of the protocol's (VmOwned, PluginExited...). */
const HVPLUG_ERROR = -31050;

type HvplugCode = HvplugError['code'];
export const HVPLUG_CODES = [
  ...(Object.keys(ErrorCode) as (keyof typeof ErrorCode)[]),
  'PluginExited',
  'ProtocolError',
  'ProtocolViolation',
  'Integrity',
  'Spawn',
  'PluginFailed',
  'PluginNotFound',
  'Vetoed',
  'VmOwned',
  'PluginUnreachable',
  'MigrationUndecided',
  'StateWrite',
  'Unreadable',
] as const satisfies readonly HvplugCode[];
// Every code, or the type check fails: one left out crossed the wire as InternalError (StateWrite, MigrationUndecided did).
const everyCode: [Exclude<HvplugCode, (typeof HVPLUG_CODES)[number]>] extends [never] ? true : never = true;
void everyCode;

const ErrorWireData = z.object({ hvplug: z.enum(HVPLUG_CODES) });

/**
 * A failure in the daemon as the client's answer. The message is kept whole, so that a command through the daemon
 * prints what it prints without one; an error that is not hvplug's stays one (the CLI calls it internal).
 */
export function toResponseError(err: unknown, method: string): ResponseError<unknown> {
  if (err instanceof ResponseError) return err;
  if (err instanceof $ZodError) {
    const issues = toIssues(err);
    return new ResponseError(ErrorCode.InvalidParams, `${method}: invalid params: ${formatIssues(issues)}`, { method, issues });
  }
  if (err instanceof HvplugError) {
    const code = (ErrorCode as Record<string, number>)[err.code] ?? HVPLUG_ERROR;
    return new ResponseError(code, err.message, { hvplug: err.code });
  }
  return new ResponseError(ErrorCode.InternalError, err instanceof Error ? err.message : String(err));
}

/** The error a client raises for the daemon's answer: an HvplugError when it was one there. */
export function fromResponseError(code: number, message: string, data: unknown): Error {
  const parsed = ErrorWireData.safeParse(data);
  if (parsed.success) return new HvplugError(message, parsed.data.hvplug);
  if (errorCodeName(code) === 'InternalError') return new Error(message);
  return new HvplugError(message, errorCodeName(code) ?? 'InternalError');
}
