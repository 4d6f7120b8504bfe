import { readFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundle, pluginEntries, root } from '../../scripts/bundle.mjs';
import { crossPluginImports, cycles, fileGraph, sourceFiles, unitGraph, unitOf, type Graph } from '../architecture-graph.js';

const FIXTURES = join(root, 'test/fixtures/architecture');

/** Our own modules a file imports, as units (src/core, src/protocol, plugins/x, ...). */
function importsOf(graph: Graph, file: string): string[] {
  return [...(graph.get(file) ?? [])].map(unitOf);
}

const RULES: { from: string; allowed: (target: string, self: string) => boolean; why: string }[] = [
  { from: 'src/protocol', allowed: (t) => t === 'src/protocol', why: 'protocol imports nothing of ours' },
  { from: 'src/transport', allowed: (t) => t === 'src/transport' || t === 'src/protocol', why: 'transport imports only protocol' },
  { from: 'src/errors', allowed: (t) => t === 'src/errors' || t === 'src/protocol', why: 'errors import only protocol' },
  { from: 'src/proc', allowed: (t) => t === 'src/proc', why: '/proc reading imports nothing of ours' },
  {
    from: 'src/plugin-sdk',
    allowed: (t) => t === 'src/protocol' || t === 'src/transport' || t === 'src/proc' || t === 'src/plugin-sdk',
    why: 'plugin-sdk imports only protocol, transport and proc',
  },
  { from: 'src/core', allowed: (t) => !t.startsWith('src/plugin-sdk') && !t.startsWith('plugins'), why: 'core never imports plugin-sdk or plugins' },
  { from: 'src/shim', allowed: (t) => !t.startsWith('src/plugin-sdk') && !t.startsWith('plugins') && t !== 'src/core', why: 'shim never imports core, plugin-sdk or plugins' },
  {
    from: 'plugins',
    allowed: (t, self) => t === 'src/protocol' || t === 'src/plugin-sdk' || t === self,
    why: 'plugins import only hvplug/plugin-sdk, hvplug/protocol and their own files',
  },
];

function ruleViolations(graph: Graph): string[] {
  const out: string[] = [];
  for (const [file, deps] of graph) {
    for (const rule of RULES) {
      if (file !== rule.from && !file.startsWith(`${rule.from}/`)) continue;
      for (const d of deps) if (!rule.allowed(unitOf(d), unitOf(file))) out.push(`${file} imports ${unitOf(d)} (${rule.why})`);
    }
  }
  return out;
}

/** Every breach of the boundaries in a tree: rule breaches, cross-plugin imports, file cycles, unit cycles. */
function breaches(treeRoot: string): string[] {
  const graph = fileGraph(treeRoot);
  return [
    ...ruleViolations(graph),
    ...crossPluginImports(graph),
    ...cycles(graph).map((c) => `file cycle: ${c.join(' <-> ')}`),
    ...cycles(unitGraph(graph)).map((c) => `unit cycle: ${c.join(' <-> ')}`),
  ];
}

describe('dependency rule', () => {
  const graph = fileGraph(root);

  for (const rule of RULES) {
    it(rule.why, () => {
      expect(ruleViolations(graph).filter((v) => v.startsWith(`${rule.from}/`))).toEqual([]);
    });
  }

  it('no import cycle, between files or between units (src/<area>, plugins/<name>)', () => {
    expect(cycles(graph)).toEqual([]);
    expect(cycles(unitGraph(graph))).toEqual([]);
  });

  it('no plugin imports another', () => {
    expect(crossPluginImports(graph)).toEqual([]);
  });

  it('the repository has no breach at all', () => {
    expect(breaches(root)).toEqual([]);
  });

  it('plugins reach our code only through the package exports, never by relative path into src', async () => {
    const bad: string[] = [];
    for (const file of sourceFiles(root, 'plugins')) {
      const text = await readFile(join(root, file), 'utf8');
      for (const m of text.matchAll(/from\s+['"](\.[^'"]+)['"]/g)) {
        const target = relative(root, join(root, file, '..', m[1]!));
        if (target.startsWith('src/')) bad.push(`${file} imports ${m[1]}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('catches a violation when there is one', () => {
    expect(importsOf(graph, 'src/core/host.ts')).toContain('src/shim');
    expect(RULES[0]!.allowed('src/core', 'src/protocol')).toBe(false);
  });

  it('fails on a file cycle (fixture tree cycle/)', () => {
    expect(breaches(join(FIXTURES, 'cycle'))).toEqual([
      'file cycle: src/alpha/a.ts <-> src/beta/b.ts',
      'unit cycle: src/alpha <-> src/beta',
    ]);
  });

  it('fails on a cycle between units though no file cycle exists, as src/shim <-> src/core was (fixture tree unit-cycle/)', () => {
    const tree = join(FIXTURES, 'unit-cycle');
    expect(cycles(fileGraph(tree))).toEqual([]);
    expect(breaches(tree)).toEqual(['unit cycle: src/alpha <-> src/beta']);
  });

  it('fails on a plugin importing another (fixture tree cross-plugin/)', () => {
    expect(breaches(join(FIXTURES, 'cross-plugin'))).toEqual([
      'plugins/one/src/main.ts imports plugins/two (plugins import only hvplug/plugin-sdk, hvplug/protocol and their own files)',
      'plugins/one/src/main.ts imports plugins/two/src/helper.ts',
    ]);
  });
});

describe('plugin bundles', () => {
  it('each plugin bundles into one file that contains no host code, no vscode-jsonrpc (the SDK dispatches JSON-RPC itself) and no zod classic', async () => {
    const entries = (await pluginEntries()).filter((e) => e.outfile.includes('hvplug-plugin-'));
    expect(entries.map((e) => relative(root, e.entry))).toContain('plugins/example-proprietary/src/main.ts');
    const out = await mkdtemp(join(tmpdir(), 'hvplug-bundle-'));
    for (const { entry } of entries) {
      const meta = await bundle(entry, join(out, 'plugin.mjs'));
      const inputs = Object.keys(meta.inputs);
      expect(inputs.some((i) => i.includes('src/plugin-sdk/'))).toBe(true);
      expect(inputs.filter((i) => /src\/(core|shim|cli|conformance)\//.test(i))).toEqual([]);
      expect(inputs.filter((i) => i.includes('node_modules/vscode-jsonrpc/'))).toEqual([]);
      // zod/mini and zod's English locale, not zod's classic API (~2 MiB more in every plugin process) nor its other
      // locales. A module esbuild read but shook out whole has no bytes in the output.
      const zod = Object.values(meta.outputs)
        .flatMap((o) => Object.entries(o.inputs))
        .filter(([i, { bytesInOutput }]) => i.includes('node_modules/zod/') && bytesInOutput > 0)
        .map(([i]) => i.replace(/^.*node_modules\/zod\//, ''));
      expect(zod, entry).toContain('v4/mini/schemas.js');
      expect(zod.filter((m) => !/^v4\/(core\/|mini\/|locales\/en\.js$)/.test(m)), entry).toEqual([]);
      const text = await readFile(join(out, 'plugin.mjs'), 'utf8');
      expect(text).not.toContain('class PluginHost');
      // esbuild keeps zod's constructor names: classic's are ZodString, ZodObject..., mini's ZodMiniString...
      expect(text, entry).not.toMatch(/"Zod(String|Object|Number)"/);
      expect(text.split('\n').length).toBeGreaterThan(1);
    }
  });
});

describe('host bundles', () => {
  // zod classic is ~2 MiB more resident than zod/mini in every process that loads it (esbuild cannot tree-shake
  // classic: each schema's methods reach all of it). An embedder's host and the daemon load none of it, and of zod's
  // 60 locales English alone (`z.core.$ZodError` as a value would keep them all).
  for (const entry of ['src/core/index.ts', 'src/daemon/index.ts']) {
    it(`${entry}, with all it may import, holds no zod classic and one zod locale`, async () => {
      const out = await mkdtemp(join(tmpdir(), 'hvplug-bundle-'));
      const meta = await bundle(join(root, entry), join(out, 'host.mjs'));
      // What the bundle holds: an input esbuild read and shook out entirely is listed with no byte in the output.
      const inputs = Object.values(meta.outputs).flatMap((o) => Object.entries(o.inputs).filter(([, i]) => i.bytesInOutput > 0).map(([name]) => name));
      expect(inputs.some((i) => i.includes('node_modules/zod/v4/mini/'))).toBe(true);
      expect(inputs.filter((i) => i.includes('node_modules/zod/v4/classic/'))).toEqual([]);
      expect(inputs.filter((i) => /node_modules\/zod\/v4\/locales\/(?!index\.js)/.test(i))).toEqual(['node_modules/zod/v4/locales/en.js']);
    });
  }
});
