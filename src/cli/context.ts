import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import * as z from 'zod/mini';
import { InitializeParams } from 'hvplug/protocol';
import { defaultConfigFile, defaultStateDir, MAX_LOST_AFTER_MS, PluginHost } from '../core/index.js';
import { checkOwnStateDir, openDaemonHost, type RemoteHost } from '../daemon/index.js';
import { delayValue, dirPath, existingDir, existingFile, flagSet, rejectValue } from './args.js';
import { Output } from './output.js';
import { safeJson } from './safe-text.js';
import { clearStatus, humanLogLine, startProgress, type Progress } from './tty.js';

export { GLOBAL_FLAGS } from './global-flags.js';

const LogLevel = InitializeParams.shape.logLevel.def.innerType;

export const GlobalOptions = z.object({
  config: z.optional(existingFile()),
  'plugin-dir': z._default(z.array(existingDir()), []),
  'state-dir': z.optional(dirPath()),
  'runtime-dir': z.optional(dirPath()),
  'log-level': z.optional(
    z.pipe(
      z.string(),
      z.transform((s, ctx) => {
        const level = LogLevel.safeParse(s);
        return level.success ? level.data : rejectValue(ctx, `expected one of ${LogLevel.options.join(', ')}, got "${s}"`);
      }),
    ),
  ),
  /** In milliseconds. */
  'unreachable-lost-after': z.optional(delayValue(MAX_LOST_AFTER_MS, 'never')),
  help: flagSet(),
  version: flagSet(),
});
export type GlobalOptions = z.output<typeof GlobalOptions>;

/**
 * pino with its streams is loaded when a command first logs (or hands its logger on, as to a host of its own): a
 * command that only asks the daemon, and logs nothing, never loads it. It is CommonJS, so it is required in place.
 */
function loadPino(): typeof import('pino') {
  return createRequire(import.meta.url)('pino') as typeof import('pino');
}

/**
 * Log lines on stderr, a terminal as often as not, carry plugins' text: C1 controls escaped as well (see
 * safeJson). Synchronous, so that a line written just before exit is not lost. `human`: text for a person at a
 * terminal (see humanLogLine) instead of pino's JSON lines.
 */
export function stderrLog(human = false): { write(line: string): void } {
  const dest = loadPino().destination({ dest: 2, sync: true });
  if (!human) return { write: (line) => void dest.write(safeJson(line)) };
  const color = !process.env.NO_COLOR;
  return {
    write: (line) => {
      clearStatus();
      dest.write(`${humanLogLine(line, color)}\n`);
    },
  };
}

/** Whether stderr gets text for a person: a terminal, and no --json asked for (a script reading a terminal is rare). */
export function humanStderr(json: boolean): boolean {
  return process.stderr.isTTY === true && !json;
}

/** What every command gets: the global options and the means to reach plugins. */
export class CliContext {
  private made?: Logger;

  /** Text rather than JSON on stderr (logs) and status lines on long waits. */
  readonly human: boolean;

  constructor(
    readonly globals: GlobalOptions,
    mode: { json?: boolean } = {},
  ) {
    this.human = humanStderr(mode.json === true);
  }

  get logger(): Logger {
    return (this.made ??= loadPino()({ name: 'hvplug', level: this.globals['log-level'] ?? 'warn' }, stderrLog(this.human)));
  }

  /** A status line for a long wait (on a terminal only): `what` is given the time waited so far. */
  progress(what: (elapsed: string) => string): Progress {
    return startProgress(this.human, what);
  }

  output(json: boolean): Output {
    return new Output(json);
  }

  /**
   * The host of the VM commands: the state directory's daemon when one runs, else one of this process's own (as
   * openHost). A daemon's VMs are only ever changed through it.
   */
  async vmHost(): Promise<RemoteHost | PluginHost> {
    const daemon = await openDaemonHost(this.stateDir);
    if (daemon) return daemon;
    // Another user's directory, whose daemon let this one in while it ran, is said to be so, not failed on inside.
    await checkOwnStateDir(this.stateDir);
    return this.openHost();
  }

  /** The state directory the commands use. */
  get stateDir(): string {
    return this.globals['state-dir'] ?? defaultStateDir();
  }

  /** A host configured from the global options; nothing starts until a plugin is asked for. */
  openHost(): PluginHost {
    const g = this.globals;
    return new PluginHost({
      // Empty, not undefined, when there is none: the host would read $HVPLUG_CONFIG again.
      configFile: g.config ?? defaultConfigFile() ?? '',
      pluginDirs: g['plugin-dir'],
      stateDir: g['state-dir'],
      runtimeDir: g['runtime-dir'],
      logLevel: g['log-level'] ?? 'warn',
      logger: this.logger,
      ...(g['unreachable-lost-after'] === undefined ? {} : { supervision: { unreachableLostAfterMs: g['unreachable-lost-after'] } }),
    });
  }
}
