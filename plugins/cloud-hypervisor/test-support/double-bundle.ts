// Bundles the contract double for a test run with esbuild, laid out as the project build lays it out
// (dist/<bundle> beside spec/), so the double finds openapi.yaml the way the shipped one does.
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..');

let bundled: Promise<string> | undefined;
let bundleDir: string | undefined;

/** Path of an executable .mjs of double/main.ts; built once per process. */
export function bundleDouble(): Promise<string> {
  bundled ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ch-double-'));
    bundleDir = dir;
    await mkdir(join(dir, 'dist'));
    await symlink(join(pluginDir, 'spec'), join(dir, 'spec'));
    const outfile = join(dir, 'dist', 'cloud-hypervisor-double.mjs');
    await build({
      entryPoints: [join(pluginDir, 'double', 'main.ts')],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      // CommonJS dependencies bundled into ESM need a real require for node builtins.
      banner: { js: "import { createRequire as __chCreateRequire } from 'node:module'; const require = __chCreateRequire(import.meta.url);" },
      logLevel: 'error',
    });
    return outfile;
  })();
  return bundled;
}

/** Removes the bundle built by bundleDouble(). */
export async function removeDoubleBundle(): Promise<void> {
  if (bundleDir) await rm(bundleDir, { recursive: true, force: true });
  bundleDir = undefined;
  bundled = undefined;
}
