import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureCliBuilt, removeTempDirs, tempDir } from '../helpers.js';

/** An embedder's process: `new PluginHost()` with no logger given, one VM's life, and what its stderr shows. */
const SCRIPT = `
const { PluginHost } = await import(process.argv[1]);
const host = new PluginHost({ stateDir: process.argv[2], runtimeDir: process.argv[3], ...JSON.parse(process.argv[4]) });
const hv = await host.hypervisor('example-proprietary');
const vm = await hv.createVm({ memory: { sizeMiB: 64 } });
await vm.start();
await vm.stop();
await vm.delete();
await host.close();
`;

let dir: string;
beforeAll(async () => {
  await ensureCliBuilt();
  dir = await tempDir('hvplug-embedder-');
}, 120_000);
afterAll(removeTempDirs);

const embed = (opts: object) =>
  execa('node', ['--input-type=module', '-e', SCRIPT, join(process.cwd(), 'dist/src/core/index.js'), join(dir, 'state'), join(dir, 'run'), JSON.stringify(opts)], {
    reject: false,
    timeout: 60_000,
    env: { HVPLUG_CONFIG: '' },
  });

describe('an embedder that gives no logger', () => {
  it('sees nothing on its stderr when all goes well (the default level is warn)', async () => {
    const r = await embed({});
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('still gets the host and plugin lines when it asks for info', async () => {
    const r = await embed({ logLevel: 'info' });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/"level":30/);
  });
});
