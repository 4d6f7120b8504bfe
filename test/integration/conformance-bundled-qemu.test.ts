// The conformance suite run against the QEMU plugin the way the README shows it: under TCG with the host's
// kernel and hvplug's default initramfs, as its plugin chooses by default.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SKIP_MESSAGE, findQemu } from '../../plugins/qemu/test-support/guest.js';
import { conformance, expectConformant } from '../conformance-cli.js';
import { ensureCliBuilt, removeTempDirs } from '../helpers.js';

beforeAll(ensureCliBuilt, 120_000);
afterAll(removeTempDirs);

describe('hvplug conformance --plugin qemu, with the CLI defaults', () => {
  const qemu = findQemu();
  if (!qemu) console.warn(`skipping hvplug conformance --plugin qemu: ${SKIP_MESSAGE}`);
  it.skipIf(!qemu)(`passes whole under TCG${qemu ? '' : ` (skipped: ${SKIP_MESSAGE})`}`, async () => {
    // About 150 s on a loaded 2-core machine; the hot-unplug checks wait for the booting guest to answer the unplug.
    const o = await conformance(['--plugin', 'qemu']);
    expectConformant('qemu', o);
    expect(o.wallMs, 'the QEMU conformance run is too slow for CI').toBeLessThan(240_000);
  }, 360_000);
});
