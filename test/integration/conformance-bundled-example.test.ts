// The conformance suite run against the example plugin the way the README shows it: the built CLI,
// `hvplug conformance --plugin example-proprietary`, with the defaults a user gets, so a default that makes a
// bundled plugin non-conformant fails the build.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { conformance, expectConformant } from '../conformance-cli.js';
import { ensureCliBuilt, removeTempDirs } from '../helpers.js';

beforeAll(ensureCliBuilt, 120_000);
afterAll(removeTempDirs);

describe('hvplug conformance --plugin example-proprietary, with the CLI defaults', () => {
  it('passes whole', async () => {
    expectConformant('example-proprietary', await conformance(['--plugin', 'example-proprietary']));
  }, 300_000);
});
