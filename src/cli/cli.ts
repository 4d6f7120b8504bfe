import { HOST_VERSION } from '../core/version.js';
import type { Command } from './command.js';
import { COMMANDS } from './commands.js';
import { CliFailure, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from './errors.js';
import { parseFlags, splitCommand, type RawValue } from './flags.js';
import { GLOBAL_FLAGS } from './global-flags.js';
import { commandHelp, generalHelp, globalsFor } from './help.js';
import { safeText } from './safe-text.js';

// Only what every start needs is imported here: the command table, the flag parser, help and errors. A command's
// module (and the host, zod, the protocol with it) loads when that command runs, so that --version and help, and
// the commands that go through the daemon, do not pay for the others.

export { COMMANDS } from './commands.js';

async function findCommand(name: string): Promise<Command> {
  const entry = COMMANDS.find((c) => c.name === name);
  if (!entry) throw new UsageError(`unknown command "${name}"; commands: ${COMMANDS.map((c) => c.name).join(', ')}, help`);
  return entry.load();
}

/** Global flags given after the command join those given before it; a single-valued one may not be given twice. */
function mergeGlobals(command: Command, before: Record<string, RawValue>, after: Record<string, RawValue>): Record<string, RawValue> {
  const merged = { ...before };
  for (const name of Object.keys(globalsFor(command))) {
    const value = after[name];
    if (value === undefined) continue;
    delete after[name];
    const prev = merged[name];
    if (prev === undefined) merged[name] = value;
    else if (Array.isArray(prev) && Array.isArray(value)) merged[name] = [...prev, ...value];
    else if (typeof value === 'boolean') merged[name] = value;
    else throw new UsageError(`--${name} given more than once`);
  }
  return merged;
}

async function dispatch(argv: readonly string[], where: { command?: string }): Promise<number> {
  const split = splitCommand(argv, GLOBAL_FLAGS);
  const before = parseFlags(split.before, GLOBAL_FLAGS);
  if (split.command === undefined || split.command === 'help') {
    const topic = split.command === 'help' ? parseFlags(split.after, GLOBAL_FLAGS).positionals : [];
    if (topic.length > 1) throw new UsageError(`help takes one command name, got ${topic.length}`);
    if (topic[0] !== undefined) {
      process.stdout.write(`${commandHelp(await findCommand(topic[0]))}\n`);
      return EXIT_OK;
    }
    if (split.command === undefined && before.flags.version) {
      process.stdout.write(`${HOST_VERSION}\n`);
      return EXIT_OK;
    }
    // Like git and docker: the bare command is a request for help, not a mistake.
    process.stdout.write(`${generalHelp(COMMANDS)}\n`);
    return EXIT_OK;
  }
  const command = await findCommand(split.command);
  where.command = command.name;
  // Parsed as the globals they are, so that the error can be the command's own rather than "unknown option".
  const misplaced = Object.fromEntries(Object.keys(command.misplaced ?? {}).map((name) => [name, GLOBAL_FLAGS[name as keyof typeof GLOBAL_FLAGS]]));
  const after = parseFlags(split.after, { ...misplaced, ...globalsFor(command), ...command.flags });
  for (const [name, message] of Object.entries(command.misplaced ?? {})) if (after.flags[name] !== undefined) throw new UsageError(message);
  const globalRaw = mergeGlobals(command, before.flags, after.flags);
  if (globalRaw.help) {
    process.stdout.write(`${commandHelp(command)}\n`);
    return EXIT_OK;
  }
  if (globalRaw.version) {
    process.stdout.write(`${HOST_VERSION}\n`);
    return EXIT_OK;
  }
  const [{ validate }, { CliContext, GlobalOptions }] = await Promise.all([import('./args.js'), import('./context.js')]);
  const globals = validate(GlobalOptions, globalRaw);
  return command.execute(after, new CliContext(globals, { json: after.flags.json === true }));
}

/** One line on stderr per error; a stack only for what is a bug in hvplug, and only when asked. */
async function report(err: unknown, command: string | undefined): Promise<number> {
  // Error messages carry plugins' text (their errors, a crashed guest's reason).
  const say = (s: string): void => void process.stderr.write(`${safeText(s)}\n`);
  if (err instanceof UsageError) {
    // One line even when the message quotes input that had line breaks (a JSON parse error).
    const message = err.message.replace(/\s*\n\s*/g, ' ');
    say(`hvplug${command ? ` ${command}` : ''}: ${message} (see: hvplug ${command ? `${command} ` : ''}--help)`);
    return EXIT_USAGE;
  }
  if (err instanceof CliFailure) {
    say(`hvplug: ${err.message}`);
    return EXIT_FAILURE;
  }
  // Loaded here, not at start: an error of these kinds comes from a command that has loaded them already.
  const [{ HvplugError }, { $ZodError }, { formatIssues, toIssues }, { UnsafeDirectoryError }] = await Promise.all([
    import('../errors/index.js'),
    import('zod/v4/core'),
    import('hvplug/protocol'),
    import('../core/paths.js'),
  ]);
  // A directory someone else could control is the machine's state, not hvplug's fault: said as it is.
  if (err instanceof HvplugError || err instanceof UnsafeDirectoryError) {
    say(`hvplug: ${err.message}`);
    return EXIT_FAILURE;
  }
  // $ZodError: what a schema of zod/mini (the protocol's) throws as well as one of zod's classic API; classic's
  // z.ZodError is not one of the former.
  if (err instanceof $ZodError) {
    say(`hvplug: ${formatIssues(toIssues(err))}`);
    return EXIT_FAILURE;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  say(`hvplug: internal error: ${e.message}${process.env.HVPLUG_DEBUG ? `\n${e.stack ?? ''}` : ' (set HVPLUG_DEBUG=1 for a stack trace)'}`);
  return EXIT_FAILURE;
}

export async function main(argv: readonly string[]): Promise<number> {
  const where: { command?: string } = {};
  try {
    return await dispatch(argv, where);
  } catch (err) {
    return await report(err, where.command);
  }
}
