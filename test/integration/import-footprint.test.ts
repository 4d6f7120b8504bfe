import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureCliBuilt } from '../helpers.js';

/**
 * What an embedder's `import 'hvplug'` loads. Every package loaded costs the importing process memory for as
 * long as it lives (bench figure 9 measures how much); what only a spawned plugin, a made logger or a config
 * file needs is loaded when first used.
 */
const PROBE = `
import { register, createRequire } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const { port1, port2 } = new MessageChannel();
const loaded = new Set();
port1.on('message', (url) => loaded.add(url));
port1.unref();
register('data:text/javascript,' + encodeURIComponent(
  'let port; export function initialize(d) { port = d.port; }' +
  'export async function load(url, ctx, next) { port.postMessage(url); return next(url, ctx); }'
), { data: { port: port2 }, transferList: [port2] });
await import(process.argv[1]);
// Messages from the hooks thread arrive asynchronously.
await new Promise((r) => setTimeout(r, 200));
const required = Object.keys(createRequire(import.meta.url).cache);
const packages = new Set();
for (const f of [...loaded, ...required]) {
  const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(decodeURIComponent(f));
  if (m) packages.add(m[1]);
}
process.stdout.write(JSON.stringify([...packages].sort()));
`;

async function packagesLoadedBy(specifier: string): Promise<string[]> {
  const r = await execa(process.execPath, ['--no-warnings', '--input-type=module', '-e', PROBE, specifier], { cwd: process.cwd() });
  return JSON.parse(r.stdout) as string[];
}

beforeAll(ensureCliBuilt, 120_000);

describe("import 'hvplug'", () => {
  it('loads neither execa, pino, smol-toml, vscode-jsonrpc nor prom-client: they load when a plugin is spawned, a logger made, a config file read, metrics asked for', async () => {
    const loaded = await packagesLoadedBy('hvplug');
    for (const lazy of ['execa', 'pino', 'smol-toml', 'vscode-jsonrpc', 'prom-client']) expect(loaded, lazy).not.toContain(lazy);
  });

  it("loads zod from the package's bundle (scripts/bundle-package.mjs), not its ~95 modules from node_modules", async () => {
    for (const specifier of ['hvplug', 'hvplug/protocol', 'hvplug/plugin-sdk', 'hvplug/conformance']) {
      expect(await packagesLoadedBy(specifier), specifier).not.toContain('zod');
    }
  });

  it("hvplug/plugin-sdk loads neither pino nor vscode-jsonrpc: a plugin logs through the SDK's own stderr logger unless it passes one, and speaks JSON-RPC through the SDK's own dispatcher", async () => {
    const loaded = await packagesLoadedBy('hvplug/plugin-sdk');
    expect(loaded).not.toContain('pino');
    expect(loaded).not.toContain('vscode-jsonrpc');
  });

  it('shares one copy of what two entry points both export: the bundles are built together, their common code one chunk', async () => {
    const r = await execa(
      process.execPath,
      ['--input-type=module', '-e', "const [a, b] = await Promise.all([import('hvplug'), import('hvplug/protocol')]); process.stdout.write(String(a.ErrorCode === b.ErrorCode))"],
      { cwd: process.cwd() },
    );
    expect(r.stdout).toBe('true');
  });
});
