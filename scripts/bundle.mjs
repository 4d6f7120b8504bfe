// Bundles plugin executables into single self-contained files with esbuild. The host's own code is not
// reachable from a plugin's imports, and test/bundle.test.ts proves none of it ends up in a bundle.
import { chmod, mkdir, readdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const alias = {
  'hvplug/protocol': join(root, 'src/protocol/index.ts'),
  'hvplug/plugin-sdk': join(root, 'src/plugin-sdk/index.ts'),
};

// ESM bundles of CommonJS packages (pino, vscode-jsonrpc) need a real `require` for node builtins.
const banner = [
  '#!/usr/bin/env node',
  "import { createRequire as __hvplugCreateRequire } from 'node:module';",
  'const require = __hvplugCreateRequire(import.meta.url);',
].join('\n');

/** Bundles one entry point to an executable .mjs file and returns the esbuild metafile. */
export async function bundle(entry, outfile) {
  await mkdir(dirname(outfile), { recursive: true });
  const result = await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minify: true,
    legalComments: 'none',
    alias,
    banner: { js: banner },
    metafile: true,
    logLevel: 'error',
  });
  await chmod(outfile, 0o755);
  return result.metafile;
}

async function exists(p) {
  return stat(p).then(() => true, () => false);
}

/** Every plugins/<name>/src/main.ts, and the contract doubles in plugins/<name>/double/main.ts. */
export async function pluginEntries() {
  const out = [];
  for (const name of await readdir(join(root, 'plugins'))) {
    const main = join(root, 'plugins', name, 'src/main.ts');
    if (await exists(main)) out.push({ entry: main, outfile: join(root, 'plugins', name, 'dist', `hvplug-plugin-${name}.mjs`) });
    const double = join(root, 'plugins', name, 'double/main.ts');
    if (await exists(double)) out.push({ entry: double, outfile: join(root, 'plugins', name, 'dist', `${name}-double.mjs`) });
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const { entry, outfile } of await pluginEntries()) await bundle(entry, outfile);
}
