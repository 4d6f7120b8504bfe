import * as z from 'zod';
import { openRpcDocument } from 'hvplug/protocol';
import { flagSet } from './args.js';
import { defineCommand } from './command.js';
import { EXIT_OK } from './errors.js';

export const specCommand = defineCommand({
  name: 'spec',
  summary: 'print the protocol as an OpenRPC document',
  description:
    'Prints the OpenRPC document generated from the method table: what a plugin written in any language must answer. ' +
    'Pretty-printed by default; --json prints it on one line.',
  flags: { json: { type: 'boolean', help: 'one-line JSON' } },
  positionals: [],
  options: z.object({ json: flagSet() }),
  async action({ json }, ctx) {
    const doc = openRpcDocument();
    ctx.output(json).document(doc, () => JSON.stringify(doc, null, 2));
    return EXIT_OK;
  },
});
