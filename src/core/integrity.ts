import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, constants } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { IntegrityError, PluginSpawnError } from './errors.js';

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The file exec would run: a path as given, or the first executable match on PATH. */
export async function resolveExecutable(command: string, pathEnv: string | undefined): Promise<string> {
  if (command.includes('/')) return isAbsolute(command) ? command : resolve(command);
  for (const dir of (pathEnv ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, command);
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate;
  }
  throw new PluginSpawnError(`plugin command ${command} not found on PATH`);
}

/** Checked before exec, so a tampered binary never runs. */
export async function verifyPin(path: string, expected: string): Promise<void> {
  const actual = await sha256File(path);
  if (actual !== expected.toLowerCase()) throw new IntegrityError(path, expected, actual);
}
