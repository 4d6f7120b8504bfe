// Startup snapshots as scripts/bundle.mjs builds them: code run from one does what it does run from its bundle.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { BUILTIN_PLUGINS } from 'hvplug';
import { afterAll, describe, expect, it } from 'vitest';
import { buildSnapshot } from '../../scripts/bundle.mjs';
import { builtinCodeCache } from '../../scripts/snapshot-blob.mjs';
import { pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

afterAll(removeTempDirs);

/**
 * Builds `lines` (a module, as a plugin's main is) into a snapshot; what it writes when started, and the modules of
 * node's code cache in its blob.
 */
async function runFromSnapshot(lines: string[]): Promise<{ out: string; cached: string[] | undefined }> {
  const dir = await tempDir();
  const blob = join(dir, 'x.blob');
  const built = await buildSnapshot('x', { stdin: { contents: lines.join('\n'), resolveDir: dir, sourcefile: 'x.ts', loader: 'ts' } }, blob);
  expect(built).toBe(true);
  const r = await execa(process.execPath, ['--snapshot-blob', blob, '--'], { reject: false, all: true });
  expect(r.exitCode, r.all).toBe(0);
  return { out: r.stdout, cached: builtinCodeCache(await readFile(blob))?.ids };
}

// Class fields are initialized by a function V8 compiles from the whole class's source, and node 20's V8 compiled it
// one scope too deep when its bytecode was not in the snapshot: a field reading a binding of its module read another
// context's slot ("Tally is not a constructor", or V8 trapping in its interpreter, or a wrong value read quietly).
// Strict code, as the project's tsconfig (strict) has esbuild write every bundle.
const FIELD_READS_MODULE_BINDING = [
  "'use strict';",
  "import { startupSnapshot } from 'node:v8';",
  'class Tally { n = 7; }',
  'class Holder { tally = new Tally(); }',
  'new Holder();',
  'startupSnapshot.setDeserializeMainFunction(() => { process.stdout.write(String(new Holder().tally.n)); });',
];

describe('buildSnapshot', () => {
  it("builds a snapshot without node's code cache of its modules, in which a class field reads a binding of its module", async () => {
    const { out, cached } = await runFromSnapshot(FIELD_READS_MODULE_BINDING);
    expect(out).toBe('7');
    expect(cached).toEqual([]);
  });

  // Each starts from its snapshot through real calls in test/integration/launcher.test.ts and the conformance runs.
  it.each(BUILTIN_PLUGINS)("built the %s plugin's snapshot without node's code cache", async (name) => {
    expect(builtinCodeCache(await readFile(`${pluginExecutable(name)}.blob`))?.ids).toEqual([]);
  });
});
