// The conformance suite run against the Cloud Hypervisor plugin the way the README shows it, on its contract
// double, which a user puts on PATH as `cloud-hypervisor` (the plugin's own lookup), with a kernel given by
// --vm-config because the plugin cannot boot without one.
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { DOUBLE_BUNDLE, conformance, expectConformant } from '../conformance-cli.js';
import { ensureCliBuilt, removeTempDirs, tempDir } from '../helpers.js';

beforeAll(ensureCliBuilt, 120_000);
afterAll(removeTempDirs);

describe('hvplug conformance --plugin cloud-hypervisor, with the CLI defaults', () => {
  it('passes whole against its contract double on PATH as cloud-hypervisor', async () => {
    const dir = await tempDir('hvplug-conf-ch-');
    const bin = join(dir, 'bin');
    await mkdir(bin);
    await symlink(DOUBLE_BUNDLE, join(bin, 'cloud-hypervisor'));
    const kernel = join(dir, 'vmlinux');
    await writeFile(kernel, 'not a kernel: the double only opens it');
    const vmConfig = join(dir, 'vm.json');
    await writeFile(vmConfig, JSON.stringify({ kernel: { path: kernel } }));
    const o = await conformance(['--plugin', 'cloud-hypervisor', '--vm-config', vmConfig], { PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` });
    expectConformant('cloud-hypervisor', o);
    // Each check starts the double's node process: about 3 minutes on a loaded 2-core machine.
  }, 480_000);
});
