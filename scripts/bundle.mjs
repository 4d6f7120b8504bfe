// Bundles plugin executables into single self-contained files with esbuild. The host's own code is not
// reachable from a plugin's imports, and test/unit/architecture.test.ts proves none of it ends up in a bundle.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { withoutBuiltinCodeCache } from './snapshot-blob.mjs';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const alias = {
  'hvplug/protocol': join(root, 'src/protocol/index.ts'),
  'hvplug/transport': join(root, 'src/transport/index.ts'),
  'hvplug/plugin-sdk': join(root, 'src/plugin-sdk/index.ts'),
};

// ESM bundles of CommonJS packages (pino, vscode-jsonrpc) need a real `require` for node builtins.
const banner = [
  '#!/usr/bin/env node',
  "import { createRequire as __hvplugCreateRequire } from 'node:module';",
  'const require = __hvplugCreateRequire(import.meta.url);',
].join('\n');

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  minify: true,
  legalComments: 'none',
  alias,
  metafile: true,
  logLevel: 'error',
};

/** Bundles one entry point to an executable .mjs file and returns the esbuild metafile. */
export async function bundle(entry, outfile) {
  await mkdir(dirname(outfile), { recursive: true });
  const result = await build({ ...common, entryPoints: [entry], outfile, format: 'esm', banner: { js: banner } });
  await chmod(outfile, 0o755);
  return result.metafile;
}

const shellQuote = (s) => `'${s.replaceAll("'", "'\\''")}'`;

const sha256 = (data) => createHash('sha256').update(data).digest('hex');

/**
 * The plugin executable: its snapshot on the node that built it, else its bundle on the node on PATH. Its
 * second line names the manifest by hash, so a SHA-256 pin of the launcher covers every file it may load
 * (src/core/integrity.ts reads that line; keep its format).
 */
function launcher(name, node, manifestSha256) {
  return `#!/bin/sh
# hvplug-manifest ${name}.manifest.json sha256=${manifestSha256}
# Starts the plugin from its V8 startup snapshot, which loads only in the node that built it (named here);
# from its bundle, on the node on PATH, when that node or the snapshot is gone. A host that pins this file
# does not run it: it checks the files the manifest names and runs copies of them itself. After "--" the
# arguments are the plugin's: node would take them for its own options, having no script name to stop at.
${launcherHead(node)}
if [ -x "$node" ] && [ -f "$here/${name}.blob" ]; then
  exec "$node" --snapshot-blob "$here/${name}.blob" -- "$@"
fi
exec node "$here/${name}.mjs" "$@"
`;
}

/**
 * The start of a launcher script: the node that built its snapshot (`node`), and the directory the launcher's files
 * are in (`here`), found through the symlink a PATH install makes. Shared by the plugins' launchers and hvplug's.
 */
export function launcherHead(node) {
  return `node=${shellQuote(node)}
case $0 in */*) here=\${0%/*} ;; *) here=. ;; esac
[ -L "$0" ] && here=$(dirname "$(readlink -f "$0")")`;
}

/** What the launcher may load, each file by name (in the launcher's directory) and SHA-256. */
async function manifest(dir, name, node) {
  const entry = async (file) => ({ file, sha256: sha256(await readFile(join(dir, file))) });
  const hasBlob = await exists(join(dir, `${name}.blob`));
  return `${JSON.stringify(
    { hvplugLauncher: 1, node, bundle: await entry(`${name}.mjs`), ...(hasBlob ? { snapshot: await entry(`${name}.blob`) } : {}) },
    null,
    2,
  )}\n`;
}

/**
 * A V8 startup snapshot (`blob`) of what esbuild builds from `options` (entryPoints or stdin) as the one CommonJS
 * script `node --build-snapshot` runs, with only node's builtins to require. True when it was written; an install
 * must not fail for want of a faster start, so a snapshot that cannot be built is a warning naming `name`, no blob,
 * and whoever starts from it falls back to the bundle.
 *
 * The blob holds no code cache of node's own modules. node writes one beside V8's data (2.7 MB of the example
 * plugin's 5.2) and reads and copies it at every start, and only a module first loaded after the start would use it
 * (it is then compiled from its source). The blob is built with it and the cache cut out (scripts/snapshot-blob.mjs),
 * not built through --build-snapshot-config's withoutCodeCache: that also leaves out the bytecode of every function
 * in the snapshot, and node 20's V8 compiles a class's field initializers back wrong from source (a field reading a
 * binding of its module reads another scope's slot; test/integration/snapshot-build.test.ts). A blob whose layout is
 * not recognized is kept as built, with the cache.
 */
export async function buildSnapshot(name, options, blob) {
  const work = await mkdtemp(join(tmpdir(), 'hvplug-snapshot-'));
  try {
    const script = join(work, `${name}.cjs`);
    await build({ ...common, ...options, outfile: script, format: 'cjs' });
    // node warns that some builtins (child_process, worker_threads) are not verified in snapshots: every test that
    // starts a plugin or the CLI's fast path starts it through its snapshot, which is the check that they work.
    await promisify(execFile)(process.execPath, ['--no-warnings', '--snapshot-blob', blob, '--build-snapshot', script], { cwd: work });
    const slim = withoutBuiltinCodeCache(await readFile(blob));
    if (slim) await writeFile(blob, slim);
    else console.warn(`hvplug: the startup snapshot of ${name} keeps node's code cache: its blob's layout is not the one known`);
    return true;
  } catch (err) {
    await rm(blob, { force: true });
    const why = String(err?.stderr || err?.message || err).trim().split('\n').slice(-3).join(' ');
    console.warn(`hvplug: no startup snapshot for ${name}; it will start from its bundle: ${why}`);
    return false;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * A plugin's V8 startup snapshot, its manifest and its launcher, next to its bundle (`outfile`, from bundle()).
 * Built with `node --build-snapshot`, the plugin's code is loaded and evaluated and its definition checked before
 * any process of it exists; servePlugin connects to stdio when the snapshot starts. That is most of a cold start.
 * A plugin without a snapshot is noticed by test/integration/launcher.test.ts.
 */
export async function snapshot(entry, outfile) {
  const name = basename(outfile, '.mjs');
  const dir = dirname(outfile);
  await buildSnapshot(name, { entryPoints: [entry] }, join(dir, `${name}.blob`));
  const list = await manifest(dir, name, process.execPath);
  await writeFile(join(dir, `${name}.manifest.json`), list, { mode: 0o644 });
  await writeFile(join(dir, name), launcher(name, process.execPath, sha256(list)), { mode: 0o755 });
  await chmod(join(dir, name), 0o755);
}

async function exists(p) {
  return stat(p).then(() => true, () => false);
}

/** Every plugins/<name>/src/main.ts, and the contract doubles in plugins/<name>/double/main.ts. */
export async function pluginEntries() {
  const out = [];
  for (const name of await readdir(join(root, 'plugins'))) {
    const main = join(root, 'plugins', name, 'src/main.ts');
    if (await exists(main)) out.push({ entry: main, outfile: join(root, 'plugins', name, 'dist', `hvplug-plugin-${name}.mjs`), snapshot: true });
    const double = join(root, 'plugins', name, 'double/main.ts');
    if (await exists(double)) out.push({ entry: double, outfile: join(root, 'plugins', name, 'dist', `${name}-double.mjs`) });
  }
  return out;
}

/** Every plugin's bundle, and for shipped plugins their snapshot, manifest and launcher. */
export async function buildPlugins() {
  for (const { entry, outfile, snapshot: snap } of await pluginEntries()) {
    await bundle(entry, outfile);
    if (snap) await snapshot(entry, outfile);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildPlugins();
