// The cloud-hypervisor plugin's own record of a VM (a state file in the VM's directory): writes never
// overlap (they share a temporary file), and deleting a VM waits for a write under way before its
// directory goes, so the removal cannot fail on a file that appeared meanwhile. And when the state goes to
// the host: not for the events of a pause or resume, which a catch-up from an earlier offset reads harmlessly.
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VmConfig, type VmConfigInput } from 'hvplug/protocol';
import { EventTail, MAX_READ_BYTES } from '../../src/event-tail.js';
import { pathsIn } from '../../src/paths.js';
import { DEFAULT_OPTIONS } from '../../src/settings.js';
import { parseState } from '../../src/state.js';
import { ChVm } from '../../src/vm.js';
import { memoryLogger, removeTempDirs, tempDir } from '../../../../test/helpers.js';

afterAll(removeTempDirs);

async function vmIn(dir: string, config: VmConfigInput = {}): Promise<{ vm: ChVm; warnings: () => unknown[] }> {
  await mkdir(dir, { recursive: true });
  const { logger, lines } = memoryLogger();
  const vm = new ChVm({
    vmId: 'state-vm',
    paths: pathsIn(dir),
    config: VmConfig.parse(config),
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

/** One event as the monitor writes it (pretty-printed, then a blank line). */
function chEvent(event: string, properties: Record<string, string> | null = null): string {
  return `${JSON.stringify({ timestamp: { secs: 1, nanos: 0 }, source: 'vm', event, properties }, null, 2)}\n\n`;
}

/** `bytes` or a little more of pause and resume events. */
function pausesAndResumes(bytes: number): string {
  const cycle = chEvent('paused') + chEvent('resumed');
  return cycle.repeat(Math.ceil(bytes / cycle.length));
}

describe('the event file is read in bounded steps', () => {
  it(`reads a file of several times MAX_READ_BYTES in reads of at most that, every event once`, async () => {
    const dir = await tempDir('hvplug-ch-tail-');
    const file = join(dir, 'events.json');
    const text = pausesAndResumes(3 * MAX_READ_BYTES);
    await writeFile(file, text);
    const tail = new EventTail(file, 0);
    const counts: number[] = [];
    let read;
    do {
      read = await tail.read();
      expect(read.invalid).toEqual([]);
      counts.push(read.events.length);
    } while (read.more);
    expect(counts.length).toBeGreaterThanOrEqual(4);
    expect(counts.reduce((a, b) => a + b)).toBe(text.split('\n\n').length - 1);
    // The end of the last event: its blank line is read with the next one.
    expect(tail.offset).toBe(Buffer.byteLength(text) - 2);
  });

  it('skips, as invalid, text that ends no event within MAX_READ_BYTES, and reads on after it', async () => {
    const dir = await tempDir('hvplug-ch-tail-');
    const file = join(dir, 'events.json');
    await writeFile(file, `{"junk": "${'x'.repeat(MAX_READ_BYTES)}"}\n\n${chEvent('paused')}`);
    const tail = new EventTail(file, 0);
    const first = await tail.read();
    expect(first).toMatchObject({ events: [], more: true, invalid: [{ reason: `no event ends within ${MAX_READ_BYTES} bytes` }] });
    const second = await tail.read();
    expect(second.events.map((e) => e.event)).toEqual(['paused']);
    expect(second.more).toBe(false);
  });
});

describe('the state goes to the host when a catch-up could not bring it back', () => {
  it('not for pauses and resumes; for a device removed, and for the offset a checkpoint ahead', async () => {
    const dir = join(await tempDir('hvplug-ch-state-'), 'vm');
    const { vm } = await vmIn(dir, { devices: [{ type: 'block', id: 'd0', path: '/dev/null' }] });
    const handedOut = vm.stateJson();
    // What the calls' own reads do; catch-up, as this VM has no VMM to announce statuses for.
    await writeFile(vm.paths.events, pausesAndResumes(4096));
    expect(await vm.sync('catch-up')).toBeGreaterThan(0);
    expect(await vm.statusResult()).toEqual({ status: 'created' });
    expect(vm.stateJson()).not.toEqual(handedOut);

    await appendFile(vm.paths.events, chEvent('device-removed', { id: 'd0' }));
    await vm.sync('catch-up');
    const removed = await vm.statusResult();
    expect(removed.state).toMatchObject({ devices: [] });
    // Handed out: the next answer is the status alone again.
    await appendFile(vm.paths.events, pausesAndResumes(4096));
    await vm.sync('catch-up');
    expect(await vm.statusResult()).toEqual({ status: 'created' });

    // A catch-up after a restart reads at most about a megabyte again.
    await appendFile(vm.paths.events, pausesAndResumes(1024 * 1024));
    await vm.sync('catch-up');
    expect((await vm.statusResult()).state).toMatchObject({ eventsOffset: (await readFile(vm.paths.events)).length - 2 });
    // What the plugin's own state file holds, too.
    expect(parseState(JSON.parse(await readFile(vm.paths.stateFile, 'utf8')), 'state-vm')).toEqual(vm.state());
  });
});
