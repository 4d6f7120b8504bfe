import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * The repository root, found by walking up from this module: the bench runs both as bench/*.ts (under vitest)
 * and as dist/bench/*.js (npm run bench), and the two sit at different depths.
 */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'hvplug') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the hvplug repository root');
    dir = up;
  }
}

type BundleModule = typeof import('../scripts/bundle.mjs');

/** scripts/bundle.mjs, loaded by absolute path for the same reason as repoRoot. */
export async function bundler(): Promise<BundleModule> {
  return (await import(pathToFileURL(join(repoRoot(), 'scripts/bundle.mjs')).href)) as BundleModule;
}

export const HELPERS = ['raw-echo', 'ndjson-echo', 'jsonrpc-echo', 'noop-plugin', 'libraries-floor'] as const;
/** Helpers that also get a startup snapshot and a launcher, so they start like a shipped plugin. */
const SNAPSHOTTED: readonly Helper[] = ['noop-plugin', 'libraries-floor'];
export type Helper = (typeof HELPERS)[number];

export interface Workspace {
  dir: string;
  /** Path of a helper process's bundle. */
  helper(name: Helper): string;
  /** A snapshotted helper's executable (noop-plugin, libraries-floor): its launcher, like a shipped plugin's. */
  executable(name: Helper): string;
  dispose(): Promise<void>;
}

/**
 * A scratch directory holding the helper processes, bundled from bench/procs with the same esbuild setup
 * as real plugins (the no-op plugin and the libraries floor also get a snapshot and launcher, so they start
 * like a shipped plugin),
 * plus state and runtime dirs for hosts.
 */
export async function workspace(): Promise<Workspace> {
  const dir = await mkdtemp(join(tmpdir(), 'hvplug-bench-'));
  const root = repoRoot();
  const { bundle, snapshot } = await bundler();
  const source = (h: Helper): string => join(root, 'bench/procs', `${h}.ts`);
  await Promise.all(HELPERS.map((h) => bundle(source(h), join(dir, 'procs', `${h}.mjs`))));
  for (const h of SNAPSHOTTED) await snapshot(source(h), join(dir, 'procs', `${h}.mjs`));
  return {
    dir,
    helper: (name) => join(dir, 'procs', `${name}.mjs`),
    executable: (name) => join(dir, 'procs', name),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * A bundled plugin as built by npm run build, when it has been: `executable` is what the host runs (the
 * launcher of its startup snapshot), `bundle` the same plugin as one .mjs file for node.
 */
export function builtPlugin(name: string): { executable: string; bundle: string } | undefined {
  const executable = join(repoRoot(), 'plugins', name, 'dist', `hvplug-plugin-${name}`);
  const bundle = `${executable}.mjs`;
  return existsSync(executable) && existsSync(bundle) ? { executable, bundle } : undefined;
}
