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

export const HELPERS = ['raw-echo', 'ndjson-echo', 'jsonrpc-echo', 'noop-plugin'] as const;
export type Helper = (typeof HELPERS)[number];

export interface Workspace {
  dir: string;
  /** Path of a helper process's bundle. */
  helper(name: Helper): string;
  dispose(): Promise<void>;
}

/**
 * A scratch directory holding the helper processes, bundled from bench/procs with the same esbuild setup
 * as real plugins (so the no-op plugin loads like a shipped one), plus state and runtime dirs for hosts.
 */
export async function workspace(): Promise<Workspace> {
  const dir = await mkdtemp(join(tmpdir(), 'hvplug-bench-'));
  const root = repoRoot();
  const { bundle } = await bundler();
  await Promise.all(HELPERS.map((h) => bundle(join(root, 'bench/procs', `${h}.ts`), join(dir, 'procs', `${h}.mjs`))));
  return {
    dir,
    helper: (name) => join(dir, 'procs', `${name}.mjs`),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

/** The example plugin's shipped bundle, when it has been built. */
export function examplePluginBundle(): string | undefined {
  const p = join(repoRoot(), 'plugins/example-proprietary/dist/hvplug-plugin-example-proprietary.mjs');
  return existsSync(p) ? p : undefined;
}

export function qemuPluginBundle(): string {
  return join(repoRoot(), 'plugins/qemu/dist/hvplug-plugin-qemu.mjs');
}
