import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { builtinPluginPath, packageRoot } from 'hvplug';

type BundleModule = typeof import('../scripts/bundle.mjs');

/** scripts/bundle.mjs, loaded by absolute path: the bench runs both as bench/*.ts (under vitest) and as dist/bench/*.js. */
export async function bundler(): Promise<BundleModule> {
  return (await import(pathToFileURL(join(packageRoot(), 'scripts/bundle.mjs')).href)) as BundleModule;
}

export const HELPERS = ['raw-echo', 'ndjson-echo', 'jsonrpc-echo', 'noop-plugin', 'libraries-floor', 'event-flooder', 'qmp-relay'] as const;
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
 * like a shipped plugin), plus state and runtime dirs for hosts.
 */
export async function workspace(): Promise<Workspace> {
  const dir = await mkdtemp(join(tmpdir(), 'hvplug-bench-'));
  const root = packageRoot();
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
  const executable = builtinPluginPath(name);
  const bundle = `${executable}.mjs`;
  return existsSync(executable) && existsSync(bundle) ? { executable, bundle } : undefined;
}
