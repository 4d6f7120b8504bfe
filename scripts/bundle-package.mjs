// Bundles the package's entry points (package.json "exports") into dist/pkg/, which is what `import 'hvplug'`
// and its subpaths load; tsc's dist/src/ keeps the declaration files (the exports' types) and the CLI's fallback.
//
// Why: on Node 20 every module a process loads stays resident for as long as it lives, and zod's ESM build is
// ~95 modules (64 of them locales). Loaded from node_modules it added ~14 MiB to an embedder's process; bundled,
// esbuild keeps only the zod hvplug uses (one locale) in one module. The entry points are built together with
// code splitting, so what two of them share (the protocol's schemas and error classes, zod) is one shared chunk:
// `import 'hvplug'` and `import 'hvplug/protocol'` in one process see the same classes and the same zod. zod
// stays a dependency: the declaration files import its types, and a consumer's own zod 4 interoperates
// (its schemas are checked by their traits, not by class identity, and its registry lives on globalThis).
// The other dependencies stay external: pino and smol-toml are loaded when first used; vscode-jsonrpc by
// hvplug/transport and hvplug/plugin-sdk (their MessageConnection adapters), never by hvplug's host.
import { readFile, rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { root } from './bundle.mjs';

export const packageBundleDir = join(root, 'dist/pkg');

/** The bundled entry points: the name of the file in dist/pkg/ and its source. */
export const PACKAGE_ENTRIES = {
  core: 'src/core/index.ts',
  protocol: 'src/protocol/index.ts',
  transport: 'src/transport/index.ts',
  'plugin-sdk': 'src/plugin-sdk/index.ts',
  conformance: 'src/conformance/index.ts',
};

/** The only dependency bundled; the others are loaded by name from node_modules. */
const BUNDLED = new Set(['zod']);

/**
 * node:fs taken by require, not imported as an ES module: node builds an ES module of a builtin by reading every
 * export, its lazy getters included (ReadStream, WriteStream, promises), and those load node's streams and more,
 * ~0.6 MiB resident in every process that imports hvplug, for the few sync calls the package makes. The getters
 * are left out (none is used: esbuild fails the build on an import of a name not exported here).
 */
const nodeFsByRequire = {
  name: 'node-fs-by-require',
  setup(b) {
    b.onResolve({ filter: /^(node:)?fs$/ }, () => ({ path: 'node:fs', namespace: 'node-fs-by-require' }));
    b.onLoad({ filter: /.*/, namespace: 'node-fs-by-require' }, () => {
      const descriptors = Object.getOwnPropertyDescriptors(createRequire(import.meta.url)('node:fs'));
      const values = Object.keys(descriptors).filter((name) => 'value' in descriptors[name]);
      const contents = [
        "import { createRequire } from 'node:module';",
        "const fs = createRequire(import.meta.url)('node:fs');",
        `export const { ${values.join(', ')} } = fs;`,
        'export default fs;',
      ].join('\n');
      return { contents, loader: 'js' };
    });
  },
};

export async function bundlePackage() {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
  const external = Object.keys(pkg.dependencies ?? {})
    .filter((d) => !BUNDLED.has(d))
    .flatMap((d) => [d, `${d}/*`]);
  // Written beside and swapped in whole: a process started meanwhile loads the old bundle or the new one, never a mix.
  const work = `${packageBundleDir}.${process.pid}.tmp`;
  await rm(work, { recursive: true, force: true });
  await build({
    entryPoints: Object.fromEntries(Object.entries(PACKAGE_ENTRIES).map(([name, src]) => [name, join(root, src)])),
    outdir: work,
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Whitespace and syntax minified, names kept: an embedder's stack traces still name hvplug's functions, and
    // the source maps lead to src/. Every byte of a module's source stays in the heap as long as the process
    // lives: minified, import 'hvplug' holds ~1 MiB less (the shared chunk 250 → 184 KB, core 143 → 84 KB).
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'error',
    external,
    plugins: [nodeFsByRequire],
    // The package's own entry points, as its sources import them.
    alias: {
      hvplug: join(root, 'src/core/index.ts'),
      'hvplug/protocol': join(root, 'src/protocol/index.ts'),
      'hvplug/transport': join(root, 'src/transport/index.ts'),
      'hvplug/plugin-sdk': join(root, 'src/plugin-sdk/index.ts'),
    },
  });
  const old = `${packageBundleDir}.${process.pid}.old`;
  await rename(packageBundleDir, old).catch(() => undefined);
  await rename(work, packageBundleDir);
  await rm(old, { recursive: true, force: true });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await bundlePackage();
