import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { buildPlugins, bundle, root } from '../scripts/bundle.mjs';

/** Builds the plugins (bundles, snapshots, launchers) and the test fixture plugins once per run, so every test spawns real executables. */
export default async function setup(): Promise<void> {
  await buildPlugins();
  const dir = join(root, 'test/fixtures/plugins');
  for (const f of await readdir(dir)) {
    if (f.endsWith('.ts')) await bundle(join(dir, f), join(root, 'test/fixtures/dist', f.replace(/\.ts$/, '.mjs')));
  }
}
