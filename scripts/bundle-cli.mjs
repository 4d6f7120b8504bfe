// Bundles the hvplug CLI (src/cli/cli.ts and what it imports) into dist/cli/, which dist/src/cli/main.js loads
// when it is there. A start of node reads the few files of a bundle much faster than the hundreds of modules tsc
// writes; each command's code is a chunk of its own, loaded when that command runs (src/cli/commands.ts), so that
// --version, help and the commands that only ask the daemon do not pay for the others.
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { root } from './bundle.mjs';

export const cliBundleDir = join(root, 'dist/cli');

export async function bundleCli() {
  // Written beside and swapped in whole: a CLI started meanwhile sees the old bundle or the new one, never a mix.
  const work = `${cliBundleDir}.${process.pid}.tmp`;
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  await build({
    entryPoints: { hvplug: join(root, 'src/cli/cli.ts') },
    outdir: work,
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    minify: true,
    legalComments: 'none',
    logLevel: 'error',
    // The package's own entry points are its sources. Its dependencies are bundled too, but for those loaded by
    // name at run time (pino, through createRequire), which node finds from dist/cli/ as from dist/src/.
    alias: {
      hvplug: join(root, 'src/core/index.ts'),
      'hvplug/protocol': join(root, 'src/protocol/index.ts'),
      'hvplug/transport': join(root, 'src/transport/index.ts'),
      'hvplug/plugin-sdk': join(root, 'src/plugin-sdk/index.ts'),
    },
    // ESM bundles of CommonJS packages (pino, vscode-jsonrpc) need a real `require` for node builtins.
    banner: { js: "import { createRequire as __hvplugCreateRequire } from 'node:module';\nconst require = __hvplugCreateRequire(import.meta.url);" },
  });
  await bundleFast(work);
  const old = `${cliBundleDir}.${process.pid}.old`;
  await rename(cliBundleDir, old).catch(() => undefined);
  await rename(work, cliBundleDir);
  await rm(old, { recursive: true, force: true });
}

/**
 * dist/cli/fast.js: src/cli/fast.ts, the fast path of pause and resume through a daemon, alone, with what it knows of
 * the method table and the daemon's API written in as data (fastFacts(), from the modules tsc has just written), so
 * that it loads none of the modules that build zod schemas as they load.
 */
async function bundleFast(outdir) {
  const { fastFacts } = await import(pathToFileURL(join(root, 'dist/src/cli/fast-facts.js')).href);
  await build({
    stdin: {
      contents: `import { runFast } from './fast.ts';\nconst FACTS = ${JSON.stringify(fastFacts())};\nexport const run = (argv) => runFast(argv, FACTS);\n`,
      resolveDir: join(root, 'src/cli'),
      sourcefile: 'fast-entry.ts',
      loader: 'ts',
    },
    outfile: join(outdir, 'fast.js'),
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    minify: true,
    legalComments: 'none',
    logLevel: 'error',
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await bundleCli();
