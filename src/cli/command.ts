import type * as z from 'zod/mini';
import { validate, type FlagTable, type RawArgs } from './args.js';
import type { CliContext } from './context.js';
import { UsageError } from './errors.js';

export interface Positional {
  readonly name: string;
  readonly required: boolean;
  readonly help: string;
}

/** A subcommand as main.ts and the help renderer see it, its option types erased. */
export interface Command {
  readonly name: string;
  /** One line, for `hvplug help`. */
  readonly summary: string;
  /** Paragraphs shown by `hvplug <command> --help`. */
  readonly description: string;
  readonly flags: FlagTable;
  readonly positionals: readonly Positional[];
  /**
   * A command line of its own after `--` (conformance's plugin command), handed to the action under this name as
   * a list; without it, words after `--` are ordinary positionals.
   */
  readonly rest?: { readonly name: string; readonly usage: string; readonly help: string };
  /** Extra usage lines for help, after the first (another way to call the command). */
  readonly usage?: readonly string[];
  /** Global flags that would be misread after this command: each a usage error with its message. */
  readonly misplaced?: Readonly<Record<string, string>>;
  /** Returns the exit status. */
  execute(raw: RawArgs, ctx: CliContext): Promise<number>;
}

export interface CommandDef<S extends z.core.$ZodType> extends Omit<Command, 'execute'> {
  /** Keys are flag names and positional names; values arrive as parsed by parseFlags. */
  readonly options: S;
  action(options: z.output<S>, ctx: CliContext): Promise<number>;
}

/** Binds a command's zod schema to its action, checking positionals and flag values before it runs. */
export function defineCommand<S extends z.core.$ZodType>(def: CommandDef<S>): Command {
  return {
    name: def.name,
    summary: def.summary,
    description: def.description,
    flags: def.flags,
    positionals: def.positionals,
    rest: def.rest,
    usage: def.usage,
    misplaced: def.misplaced,
    async execute(raw, ctx) {
      const input: Record<string, unknown> = { ...raw.flags };
      const rest = def.rest ? (raw.rest ?? []) : [];
      const positionals = raw.positionals.slice(0, raw.positionals.length - rest.length);
      if (def.rest) input[def.rest.name] = rest;
      def.positionals.forEach((p, i) => {
        const value = positionals[i];
        if (value === undefined && p.required) throw new UsageError(`missing <${p.name}> (${p.help})`);
        input[p.name] = value;
      });
      const extra = positionals[def.positionals.length];
      if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"${def.rest ? ` (${def.rest.usage} goes after --)` : ''}`);
      const options = validate(def.options, input, def.positionals.map((p) => p.name));
      return def.action(options, ctx);
    },
  };
}
