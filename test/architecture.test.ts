import { readdir, readFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundle, pluginEntries, root } from '../scripts/bundle.mjs';

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory() && e.name !== 'dist' && e.name !== 'node_modules') out.push(...(await sourceFiles(p)));
    else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Our own modules a file imports, as repo-relative folders (src/core, src/protocol, plugins/x, ...). */
async function importsOf(file: string): Promise<string[]> {
  const text = await readFile(join(root, file), 'utf8');
  const specs = [...text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1] ?? m[2] ?? '');
  return specs.flatMap((s) => {
    if (s === 'hvplug') return ['src/core'];
    if (s.startsWith('hvplug/')) return [`src/${s.slice('hvplug/'.length)}`];
    if (!s.startsWith('.')) return [];
    const target = relative(root, join(root, file, '..', s));
    const parts = target.split('/');
    return [parts.slice(0, 2).join('/')];
  });
}

const RULES: { from: string; allowed: (target: string) => boolean; why: string }[] = [
  { from: 'src/protocol', allowed: (t) => t === 'src/protocol', why: 'protocol imports nothing of ours' },
  { from: 'src/plugin-sdk', allowed: (t) => t === 'src/protocol' || t === 'src/plugin-sdk', why: 'plugin-sdk imports only protocol' },
  { from: 'src/core', allowed: (t) => !t.startsWith('src/plugin-sdk') && !t.startsWith('plugins'), why: 'core never imports plugin-sdk or plugins' },
  { from: 'src/shim', allowed: (t) => !t.startsWith('src/plugin-sdk') && !t.startsWith('plugins'), why: 'shim never imports plugin-sdk or plugins' },
  {
    from: 'plugins',
    allowed: (t) => t === 'src/protocol' || t === 'src/plugin-sdk' || t.startsWith('plugins/'),
    why: 'plugins import only hvplug/plugin-sdk and hvplug/protocol',
  },
];

describe('dependency rule', () => {
  for (const rule of RULES) {
    it(rule.why, async () => {
      const violations: string[] = [];
      for (const file of await sourceFiles(rule.from)) {
        for (const target of await importsOf(file)) if (!rule.allowed(target)) violations.push(`${file} imports ${target}`);
      }
      expect(violations).toEqual([]);
    });
  }

  it('plugins reach our code only through the package exports, never by relative path into src', async () => {
    const bad: string[] = [];
    for (const file of await sourceFiles('plugins')) {
      const text = await readFile(join(root, file), 'utf8');
      for (const m of text.matchAll(/from\s+['"](\.[^'"]+)['"]/g)) {
        const target = relative(root, join(root, file, '..', m[1]!));
        if (target.startsWith('src/')) bad.push(`${file} imports ${m[1]}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('catches a violation when there is one', async () => {
    expect(await importsOf('src/core/host.ts')).toContain('src/shim');
    expect(RULES[0]!.allowed('src/core')).toBe(false);
  });
});

describe('plugin bundles', () => {
  it('each plugin bundles into one file that contains no host code', async () => {
    const entries = (await pluginEntries()).filter((e) => e.outfile.includes('hvplug-plugin-'));
    expect(entries.map((e) => relative(root, e.entry))).toContain('plugins/example-proprietary/src/main.ts');
    const out = await mkdtemp(join(tmpdir(), 'hvplug-bundle-'));
    for (const { entry } of entries) {
      const meta = await bundle(entry, join(out, 'plugin.mjs'));
      const inputs = Object.keys(meta.inputs);
      expect(inputs.some((i) => i.includes('src/plugin-sdk/'))).toBe(true);
      expect(inputs.filter((i) => /src\/(core|shim|cli|conformance)\//.test(i))).toEqual([]);
      const text = await readFile(join(out, 'plugin.mjs'), 'utf8');
      expect(text).not.toContain('class PluginHost');
      expect(text.split('\n').length).toBeGreaterThan(1);
    }
  });
});
