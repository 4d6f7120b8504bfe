// The cloud-hypervisor plugin's own record of a VM (a state file in the VM's directory): writes never
// overlap (they share a temporary file), and deleting a VM waits for a write under way before its
// directory goes, so the removal cannot fail on a file that appeared meanwhile.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VmConfig } from 'hvplug/protocol';
import { pathsIn } from '../../src/paths.js';
import { DEFAULT_OPTIONS } from '../../src/settings.js';
import { parseState } from '../../src/state.js';
import { ChVm } from '../../src/vm.js';
import { memoryLogger, removeTempDirs, tempDir } from '../../../../test/helpers.js';

afterAll(removeTempDirs);

async function vmIn(dir: string): Promise<{ vm: ChVm; warnings: () => unknown[] }> {
  await mkdir(dir, { recursive: true });
  const { logger, lines } = memoryLogger();
  const vm = new ChVm({
    vmId: 'state-vm',
    paths: pathsIn(dir),
    config: VmConfig.parse({}),
    options: DEFAULT_OPTIONS,
    status: 'created',
    agent: undefined,
    eventsOffset: 0,
    bootMemoryMiB: 256,
    deps: { emit: () => undefined, log: logger },
  });
  return { vm, warnings: () => lines().filter((l) => Number(l.level) >= 40) };
}

describe('cloud-hypervisor VM state file', () => {
  it('takes many writes at once: each lands whole, none fails, no temporary file is left', async () => {
    const dir = join(await tempDir('hvplug-ch-state-'), 'vm');
    const { vm, warnings } = await vmIn(dir);
    await Promise.all(Array.from({ length: 50 }, () => vm.persist()));
    expect(warnings()).toEqual([]);
    // What a later plugin process reads back for vm/recover and vm/delete.
    expect(parseState(JSON.parse(await readFile(vm.paths.stateFile, 'utf8')), 'state-vm')).toEqual(vm.state());
    expect(await readdir(dir)).toEqual([basename(vm.paths.stateFile)]);
  });

  it('lets the directory go once the write under way is done, and writes nothing after forget', async () => {
    const dir = join(await tempDir('hvplug-ch-state-'), 'vm');
    const { vm, warnings } = await vmIn(dir);
    const writing = vm.persist();
    vm.forget();
    await vm.settled();
    await rm(dir, { recursive: true });
    await writing;
    await vm.persist();
    expect(existsSync(dir)).toBe(false);
    expect(warnings()).toEqual([]);
  });

  it('reads back only a state of this format and of this VM, saying why not', async () => {
    const { vm } = await vmIn(join(await tempDir('hvplug-ch-state-'), 'vm'));
    const blob = vm.stateJson() as Record<string, unknown>;
    expect(parseState(blob, 'state-vm')).toEqual(vm.state());
    expect(parseState(blob, 'other-vm')).toBe(`the state is VM "state-vm"'s, not other-vm's`);
    expect(parseState({ ...blob, version: 0 }, 'state-vm')).toMatch(/is not a hvplug-cloud-hypervisor\/vm-state version 1 state/);
    expect(parseState({ ...blob, pid: 'one' }, 'state-vm')).toMatch(/^state\.pid: /);
    expect(parseState(undefined, 'state-vm')).toBe('no state');
  });
});
