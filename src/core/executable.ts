import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { PluginSpawnError } from '../errors/index.js';

/** Why a command cannot be run, in the words `hvplug plugins` and startup errors use. */
export type CommandProblem = 'not found' | 'not found on PATH' | 'not executable';

export type Located = { path: string; problem?: undefined } | { path: string; problem: CommandProblem };

export async function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(() => true, () => false);
}

/** A regular file we may execute; a directory passes X_OK but is not one. */
async function problemOf(path: string): Promise<CommandProblem | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return 'not found';
  if (!st.isFile() || !(await isExecutable(path))) return 'not executable';
  return undefined;
}

/**
 * The file exec would run for a command, found the way exec finds it (a path as given, else the first
 * executable match on PATH), or why there is none. Checked before spawning so that the error says what
 * is wrong instead of an errno.
 */
export async function locateCommand(command: string, pathEnv: string | undefined): Promise<Located> {
  if (command.includes('/')) {
    const path = isAbsolute(command) ? command : resolve(command);
    const problem = await problemOf(path);
    return problem ? { path, problem } : { path };
  }
  for (const dir of (pathEnv ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, command);
    if ((await problemOf(candidate)) === undefined) return { path: candidate };
  }
  return { path: command, problem: 'not found on PATH' };
}

/** The file exec would run for a command, or a PluginSpawnError that says why there is none (`who` names the caller). */
export async function resolveExecutable(command: string, pathEnv: string | undefined, who: string): Promise<string> {
  const found = await locateCommand(command, pathEnv);
  if (found.problem) throw new PluginSpawnError(`${who}: ${found.path} ${found.problem === 'not executable' ? 'is not executable' : found.problem}`);
  return found.path;
}
