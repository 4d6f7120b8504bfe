import { existsSync } from 'node:fs';
import { appendFile, chmod, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { intValue, parseFlags, secondsValue, splitCommand, validate, type FlagTable } from '../../src/cli/args.js';
import { FileTail, LineSplitter } from '../../src/cli/console-tail.js';
import { GLOBAL_FLAGS } from '../../src/cli/context.js';
import { UsageError } from '../../src/cli/errors.js';
import { RunEnding, watchSignals } from '../../src/cli/run-ending.js';
import { verdict } from '../../src/cli/run-format.js';
import { buildVmConfig, defaultPlugin } from '../../src/cli/vm-config.js';
import { builtinPluginPath } from '../../src/core/index.js';
import { eventually, removeTempDirs, tempDir } from '../helpers.js';

afterAll(removeTempDirs);

const flags: FlagTable = {
  plugin: { type: 'string', help: '' },
  json: { type: 'boolean', help: '' },
  'plugin-dir': { type: 'string', multiple: true, help: '' },
  vcpus: { type: 'string', help: '' },
};

const usage = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error('expected a UsageError');
};

describe('cli argument parsing', () => {
  it('splits global options, the command and its options at the first positional', () => {
    expect(splitCommand(['--plugin-dir', 'd', '--log-level', 'debug', 'run', '--config', 'vm.json'], GLOBAL_FLAGS)).toEqual({
      before: ['--plugin-dir', 'd', '--log-level', 'debug'],
      command: 'run',
      after: ['--config', 'vm.json'],
    });
    expect(splitCommand(['--help'], GLOBAL_FLAGS)).toEqual({ before: ['--help'], after: [] });
  });

  it('parses strings, booleans, repeatable flags and positionals', () => {
    expect(parseFlags(['--plugin', 'qemu', 'x', '--json', '--plugin-dir', 'a', '--plugin-dir=b', '--vcpus=-1'], flags)).toEqual({
      flags: { plugin: 'qemu', json: true, 'plugin-dir': ['a', 'b'], vcpus: '-1' },
      positionals: ['x'],
    });
  });

  it('names the flag in every mistake', () => {
    expect(usage(() => parseFlags(['--frob'], flags))).toBe('unknown option --frob');
    expect(usage(() => parseFlags(['--plugin'], flags))).toBe('--plugin needs a value');
    expect(usage(() => parseFlags(['--plugin', '--json'], flags))).toMatch(/^--plugin needs a value, got the option --json/);
    expect(usage(() => parseFlags(['--json=yes'], flags))).toBe('--json takes no value (got "yes")');
    expect(usage(() => parseFlags(['--plugin', 'a', '--plugin', 'b'], flags))).toBe('--plugin given more than once');
  });

  it('turns the first zod issue into a message naming the flag or the positional', () => {
    const schema = z.object({ vcpus: z.optional(intValue(1, 8)), timeout: z.optional(secondsValue()), name: z.string() });
    expect(validate(schema, { vcpus: '4', timeout: '1.5', name: 'x' })).toEqual({ vcpus: 4, timeout: 1.5, name: 'x' });
    expect(usage(() => validate(schema, { vcpus: '9', name: 'x' }))).toBe('--vcpus: expected a whole number from 1 to 8, got "9"');
    expect(usage(() => validate(schema, { vcpus: '2.5', name: 'x' }))).toMatch(/^--vcpus: /);
    expect(usage(() => validate(schema, { timeout: 'soon', name: 'x' }))).toMatch(/^--timeout: expected a number of seconds/);
    expect(usage(() => validate(schema, {}, ['name']))).toMatch(/^<name>: /);
  });
});

describe('run: VM config from flags and file', () => {
  it('passes no kernel when none is given, so the plugin boots its default guest', async () => {
    const config = await buildVmConfig({});
    expect(config.kernel).toBeUndefined();
    expect(config.console).toBe('log');
  });

  it('lets flags override the file, field by field', async () => {
    const dir = await tempDir();
    const file = join(dir, 'vm.json');
    await writeFile(file, JSON.stringify({ kernel: { path: '/boot/k', cmdline: 'quiet' }, vcpus: { boot: 1, max: 8 }, memory: { sizeMiB: 128 }, machine: 'q35' }));
    const config = await buildVmConfig({ config: file, vcpus: 4, memory: 512, cmdline: 'console=ttyS0' });
    expect(config.kernel).toEqual({ path: '/boot/k', cmdline: 'console=ttyS0' });
    expect(config.vcpus).toEqual({ boot: 4, max: 8 });
    expect(config.memory.sizeMiB).toBe(512);
    expect(config.machine).toBe('q35');
  });

  it('reports a bad file or a contradiction with the file as a usage error', async () => {
    const dir = await tempDir();
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ memory: { sizeMiB: 1 } }));
    await expect(buildVmConfig({ config: bad })).rejects.toThrow(/--vm-config: .*memory\.sizeMiB/);
    const capped = join(dir, 'capped.json');
    await writeFile(capped, JSON.stringify({ vcpus: { boot: 1, max: 2 } }));
    await expect(buildVmConfig({ config: capped, vcpus: 4 })).rejects.toThrow(/vcpus\.max/);
    await expect(buildVmConfig({ cmdline: 'quiet' })).rejects.toThrow('--cmdline needs --kernel');
  });
});

describe('run: default plugin', () => {
  it('is qemu only when qemu-system-x86_64 is on PATH and the qemu plugin is bundled', async () => {
    const dir = await tempDir();
    expect(defaultPlugin({ PATH: dir })).toBe('example-proprietary');
    await writeFile(join(dir, 'qemu-system-x86_64'), '#!/bin/sh\n');
    await chmod(join(dir, 'qemu-system-x86_64'), 0o755);
    expect(defaultPlugin({ PATH: dir })).toBe(existsSync(builtinPluginPath('qemu')) ? 'qemu' : 'example-proprietary');
  });
});

describe('run: exit status', () => {
  const event = { vmId: 'v', seq: 1, time: '' };
  it('is clean when asked to stop or when the guest powers off, not when it fails', () => {
    expect(verdict({ kind: 'timeout', seconds: 1 }).ok).toBe(true);
    expect(verdict({ kind: 'interrupted', signal: 'SIGINT' }).ok).toBe(true);
    expect(verdict({ kind: 'guest', event: { ...event, type: 'stopped' } }).ok).toBe(true);
    expect(verdict({ kind: 'guest', event: { ...event, type: 'exited', code: 0, signal: null, reason: '' } }).ok).toBe(true);
    expect(verdict({ kind: 'guest', event: { ...event, type: 'exited', code: 3, signal: null, reason: '' } })).toEqual({ ok: false, message: 'the guest exited (code 3)' });
    expect(verdict({ kind: 'guest', event: { ...event, type: 'exited', code: null, signal: 'SIGKILL', reason: 'killed' } })).toEqual({
      ok: false,
      message: 'the guest exited (signal SIGKILL: killed)',
    });
    expect(verdict({ kind: 'guest', event: { ...event, type: 'crashed', reason: 'triple fault' } }).ok).toBe(false);
  });
});

describe('run: signals', () => {
  // Only the watcher under test hears the emitted signals, not the test runner's own handlers.
  const saved = new Map<NodeJS.Signals, NodeJS.SignalsListener[]>();
  beforeEach(() => {
    for (const s of ['SIGINT', 'SIGTERM'] as const) {
      saved.set(s, process.listeners(s));
      process.removeAllListeners(s);
    }
  });
  afterEach(() => {
    for (const [s, listeners] of saved) for (const l of listeners) process.on(s, l);
  });

  it('first asks for a clean stop, second forces it, third leaves; a signal during a timeout stop forces at once', () => {
    const ending = new RunEnding();
    const steps: string[] = [];
    const unwatch = watchSignals(ending, (_s, step) => steps.push(step));
    try {
      process.emit('SIGINT', 'SIGINT');
      expect(ending.reason).toEqual({ kind: 'interrupted', signal: 'SIGINT' });
      expect(ending.signal.aborted).toBe(true);
      expect(ending.forceSignal.aborted).toBe(false);
      process.emit('SIGTERM', 'SIGTERM');
      expect(ending.forceSignal.aborted).toBe(true);
      process.emit('SIGINT', 'SIGINT');
      expect(steps).toEqual(['force', 'leave']);
    } finally {
      unwatch();
    }

    const timedOut = new RunEnding();
    timedOut.end({ kind: 'timeout', seconds: 1 });
    const unwatch2 = watchSignals(timedOut, () => undefined);
    try {
      process.emit('SIGINT', 'SIGINT');
      expect(timedOut.reason?.kind).toBe('timeout');
      expect(timedOut.forceSignal.aborted).toBe(true);
    } finally {
      unwatch2();
    }
  });
});

describe('console tail', () => {
  it('splits lines and keeps a UTF-8 character split across chunks whole', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    const euro = Buffer.from('€');
    s.push(Buffer.concat([Buffer.from('a\r\nb'), euro.subarray(0, 1)]));
    s.push(Buffer.concat([euro.subarray(1), Buffer.from('\npartial')]));
    expect(lines).toEqual(['a', 'b€']);
    s.end();
    expect(lines).toEqual(['a', 'b€', 'partial']);
  });

  it('follows a file that appears late, grows, and is truncated; the last partial line comes out at stop', async () => {
    const dir = await tempDir();
    const path = join(dir, 'console.log');
    const lines: string[] = [];
    const errors: Error[] = [];
    const tail = new FileTail(path, (l) => lines.push(l), { intervalMs: 20, onError: (e) => errors.push(e) });
    await new Promise((r) => setTimeout(r, 60));
    await writeFile(path, 'one\ntw');
    await eventually(() => lines.length === 1, 2_000, 'the first line');
    expect(lines).toEqual(['one']);
    await appendFile(path, 'o\nthree\n');
    await eventually(() => lines.length === 3, 2_000, 'lines appended later');
    await truncate(path, 0);
    await tail.poll();
    await appendFile(path, 'after rotation\nno newline');
    await eventually(() => lines.includes('after rotation'), 2_000, 'a line after truncation');
    await tail.stop();
    expect(lines).toEqual(['one', 'two', 'three', 'after rotation', 'no newline']);
    expect(errors).toEqual([]);
  });
});
