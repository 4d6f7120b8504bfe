import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

/**
 * The import graph of a source tree (files under src/, plugins/), for the architecture test. Run on the repository
 * and on the fixture trees under test/fixtures/architecture, which show each check failing when it should.
 */

export function sourceFiles(root: string, dir: string): string[] {
  const out: string[] = [];
  if (!existsSync(join(root, dir))) return out;
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    // A plugin's tests (plugins/<name>/test/) drive it from the outside, through the host, like test/ does: not its code.
    const pluginTests = e.name === 'test' && /^plugins\/[^/]+$/.test(dir);
    if (e.isDirectory() && e.name !== 'dist' && e.name !== 'node_modules' && !pluginTests) out.push(...sourceFiles(root, p));
    else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/**
 * The module specifiers a file imports or re-exports (static and dynamic). `import type` and `export type` are left
 * out: the compiler erases them, so they load nothing and cannot make a load-order cycle.
 */
export function specifiers(text: string): string[] {
  return [...text.matchAll(/(?:import|export)\s(?!type\s)[^'";]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1] ?? m[2] ?? '');
}

/** The repo-relative file a specifier names, or undefined for a package outside the project. */
export function resolve(root: string, from: string, spec: string): string | undefined {
  if (spec === 'hvplug') return 'src/core/index.ts';
  if (spec.startsWith('hvplug/')) return `src/${spec.slice('hvplug/'.length)}/index.ts`;
  if (!spec.startsWith('.')) return undefined;
  const target = relative(root, join(root, dirname(from), spec));
  const candidates = [target.replace(/\.js$/, '.ts'), `${target}.ts`, join(target, 'index.ts')];
  return candidates.find((c) => existsSync(join(root, c)) && statSync(join(root, c)).isFile()) ?? target.replace(/\.js$/, '.ts');
}

/** The unit a file belongs to: src/<area> or plugins/<name>. */
export function unitOf(file: string): string {
  return file.split('/').slice(0, 2).join('/');
}

export type Graph = Map<string, Set<string>>;

export function fileGraph(root: string, dirs: readonly string[] = ['src', 'plugins']): Graph {
  const g: Graph = new Map();
  for (const file of dirs.flatMap((d) => sourceFiles(root, d))) {
    const deps = new Set<string>();
    for (const s of specifiers(readFileSync(join(root, file), 'utf8'))) {
      const target = resolve(root, file, s);
      if (target !== undefined && target !== file) deps.add(target);
    }
    g.set(file, deps);
  }
  return g;
}

export function unitGraph(files: Graph): Graph {
  const g: Graph = new Map();
  for (const [file, deps] of files) {
    const from = unitOf(file);
    const set = g.get(from) ?? new Set<string>();
    for (const d of deps) if (unitOf(d) !== from) set.add(unitOf(d));
    g.set(from, set);
  }
  return g;
}

/** The strongly connected components with more than one node (Tarjan): each is an import cycle. */
export function cycles(g: Graph): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** Imports from one plugin into another: each plugin is built and shipped alone. */
export function crossPluginImports(files: Graph): string[] {
  const out: string[] = [];
  for (const [file, deps] of files) {
    if (!file.startsWith('plugins/')) continue;
    for (const d of deps) if (d.startsWith('plugins/') && unitOf(d) !== unitOf(file)) out.push(`${file} imports ${d}`);
  }
  return out;
}
