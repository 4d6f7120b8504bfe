import * as z from 'zod';
import { flagSet } from './args.js';
import { defineCommand } from './command.js';
import { EXIT_OK } from './errors.js';
import { table } from './output.js';
import { safeLine } from './safe-text.js';

export const pluginsCommand = defineCommand({
  name: 'plugins',
  summary: 'list the plugins hvplug can find',
  description:
    'Lists every plugin by name, first source winning: the config file (--config or $HVPLUG_CONFIG), ' +
    'hvplug-plugin-<name> executables in --plugin-dir directories and on PATH, then the plugins bundled with hvplug. ' +
    'Nothing is started; PROBLEM says when a plugin\'s command is missing or not executable. ' +
    'Use `hvplug inspect <plugin>` to see what a plugin supports.',
  flags: { json: { type: 'boolean', help: 'a JSON array of {name, source, command, connect?, unreachableLostAfterMs?, args, isolation, problem?}' } },
  positionals: [],
  options: z.object({ json: flagSet() }),
  async action({ json }, ctx) {
    const catalog = ctx.openHost().catalog;
    const rows = await Promise.all(
      (await catalog.list()).map(async (s) => {
        const problem = await catalog.problemWith(s);
        return { name: s.name, source: s.source, command: s.command, ...(s.connect ? { connect: s.connect } : {}), ...(s.unreachableLostAfterMs === undefined ? {} : { unreachableLostAfterMs: s.unreachableLostAfterMs }), args: s.args, isolation: s.isolation, ...(problem ? { problem } : {}) };
      }),
    );
    ctx.output(json).document(rows, () =>
      rows.length === 0
        ? 'no plugins found'
        : table([
            ['NAME', 'SOURCE', 'COMMAND', 'PROBLEM'],
            ...rows.map((r) => [r.name, r.source, [r.command ?? r.connect, ...r.args].join(' '), r.problem ?? ''].map(safeLine)),
          ]),
    );
    return EXIT_OK;
  },
});
