// Bundles the hvplug CLI (src/cli/cli.ts and what it imports) into dist/cli/, which dist/src/cli/main.js loads
// when it is there. A start of node reads the few files of a bundle much faster than the hundreds of modules tsc
// writes; each command's code is a chunk of its own, loaded when that command runs (src/cli/commands.ts), so that
// --version, help and the commands that only ask the daemon do not pay for the others.
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { buildSnapshot, launcherHead, root } from './bundle.mjs';

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

/** Exit status of the fast path's snapshot when it leaves the command line to the CLI, having done nothing. */
export const FAST_DECLINED = 222;
/** node's exit status for a startup snapshot it cannot load (built by another node): the CLI runs instead. */
const SNAPSHOT_UNUSABLE = 14;

/**
 * dist/cli/fast.js: src/cli/fast.ts, the fast path of pause and resume through a daemon, alone, with what it knows of
 * the method table and the daemon's API written in as data (fastFacts(), from the modules tsc has just written), so
 * that it loads none of the modules that build zod schemas as they load. dist/cli/fast.blob: the same, as a V8
 * startup snapshot the launcher (dist/cli/hvplug) starts pause and resume from, so that node neither reads nor
 * compiles a module of it, nor loads node:net, on the way to the socket (bench figure 9).
 */
async function bundleFast(outdir) {
  const { fastFacts } = await import(pathToFileURL(join(root, 'dist/src/cli/fast-facts.js')).href);
  const facts = `const FACTS = ${JSON.stringify(fastFacts())};`;
  const resolveDir = join(root, 'src/cli');
  await build({
    stdin: {
      contents: `import { runFast } from './fast.ts';\n${facts}\nexport const run = (argv) => runFast(argv, FACTS);\n`,
      resolveDir,
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
  // Started with `node --snapshot-blob fast.blob -- <args>`: no script name, so the arguments start at argv[1].
  const snapshotMain = [
    "import { startupSnapshot } from 'node:v8';",
    "import { exitFast, runFast, stdoutSink, warmFast } from './fast.ts';",
    facts,
    'warmFast(FACTS);',
    'startupSnapshot.setDeserializeMainFunction(() => {',
    // Not process.stdout: making that stream costs more than the line it would write (stdoutSink).
    '  const out = stdoutSink();',
    `  runFast(process.argv.slice(1), FACTS, out, true).then((code) => exitFast(code ?? ${FAST_DECLINED}, out), (err) => {`,
    "    process.stderr.write(`hvplug: internal error: ${err?.stack ?? err}\\n`);",
    '    process.exitCode = 1;',
    '  });',
    '});',
  ].join('\n');
  // Without node's code cache of its own modules (buildSnapshot): every module the fast path uses is in the snapshot
  // already, and the cache (2.7 MB of the blob's 4.4) was read and copied at each start for nothing (bench figure 9).
  const blob = await buildSnapshot(
    'hvplug-fast',
    { stdin: { contents: snapshotMain, resolveDir, sourcefile: 'fast-snapshot.ts', loader: 'ts' } },
    join(outdir, 'fast.blob'),
  );
  await writeFile(join(outdir, 'hvplug'), launcher(process.execPath, blob), { mode: 0o755 });
  await chmod(join(outdir, 'hvplug'), 0o755);
}

/**
 * The hvplug executable (package.json's bin). A command line naming pause or resume is first offered to the fast
 * path's snapshot, which loads only in the node that built it (named here); it runs the command when a daemon
 * serves the state directory, and otherwise exits FAST_DECLINED having done nothing. Everything else, and what the
 * snapshot declines or node cannot load, is the CLI's (dist/src/cli/main.js) on the node on PATH.
 */
function launcher(node, withBlob) {
  const fast = withBlob
    ? `if [ -x "$node" ] && [ -f "$here/fast.blob" ]; then
  for arg in "$@"; do
    case $arg in
      pause | resume)
        "$node" --snapshot-blob "$here/fast.blob" -- "$@"
        status=$?
        [ "$status" -eq ${FAST_DECLINED} ] || [ "$status" -eq ${SNAPSHOT_UNUSABLE} ] || exit "$status"
        break
        ;;
    esac
  done
fi
`
    : '';
  return `#!/bin/sh
# The hvplug command: pause and resume through a running daemon from a V8 startup snapshot of the fast path
# (fast.blob, loadable only by the node named here); everything else, and what that declines, from the CLI.
${launcherHead(node)}
${fast}exec node "$here/../src/cli/main.js" "$@"
`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await bundleCli();
