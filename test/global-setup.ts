import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { bundle, pluginEntries, root } from '../scripts/bundle.mjs';

/** Bundles the plugins and the test fixture plugins once per run, so every test spawns real executables. */
export default async function setup(): Promise<void> {
  for (const { entry, outfile } of await pluginEntries()) await bundle(entry, outfile);
  const dir = join(root, 'test/fixtures/plugins');
  for (const f of await readdir(dir)) {
    if (f.endsWith('.ts')) await bundle(join(dir, f), join(root, 'test/fixtures/dist', f.replace(/\.ts$/, '.mjs')));
  }
}
