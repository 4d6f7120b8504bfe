// The checks that hold a plugin to the rules a stranger gets wrong: events reached the way a real VM
// reaches them, health/ping during a slow stop, requests before initialize, unknown methods, and messages
// that say what was wrong. Each is proven by a broken fixture plugin that fails exactly it.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatSummary, runConformance, toJunit, type Report } from 'hvplug/conformance';
import { alive, CLI, ensureCliBuilt, fixture, removeTempDirs, tempDir } from '../helpers.js';

const FAST = { exitDeadlineMs: 1_000, callTimeoutMs: 5_000 };
/** What makes the broken core's guest power itself off. */
const POWER_OFF = { plugin: { powerOffAfterMs: 200 } };

beforeAll(ensureCliBuilt, 120_000);
afterAll(removeTempDirs);

function failed(report: Report): string[] {
  return report.checks.filter((c) => c.status === 'fail').map((c) => c.id).sort();
}

function check(report: Report, id: string): Report['checks'][number] {
  const c = report.checks.find((x) => x.id === id);
  if (!c) throw new Error(`no check ${id} in the report`);
  return c;
}

function expectNothingLeft(report: Report): void {
  expect(report.pids.filter(alive)).toEqual([]);
}

describe('events reached the way a real VM reaches them', () => {
  it('a killed VMM is exited then crashed, and the VM crashed, as the table says; lifecycle.table checks the crashed row', async () => {
    const report = await runConformance({ command: fixture('broken-none-vmm'), ...FAST });
    expect(check(report, 'events.vmm-exit').status).toBe('pass');
    expect(check(report, 'lifecycle.table').status).toBe('pass');
    expect(failed(report)).toEqual([]);
    expectNothingLeft(report);
  });

  it('a killed VMM reported as a clean power-off (exited alone, stopped) fails events.vmm-exit, and only it', async () => {
    const report = await runConformance({ command: fixture('broken-vmm-exit'), ...FAST });
    expect(check(report, 'events.vmm-exit').message).toMatch(/SIGKILLed; the state machine \(x-hvplug-vmm-ends, killed\) asks for exited then crashed, the plugin sent exited within/);
    expect(failed(report)).toEqual(['events.vmm-exit']);
    expectNothingLeft(report);
  });

  it('lifecycle.table brings a VM to crashed and holds it to the crashed row', async () => {
    const report = await runConformance({ command: fixture('broken-crashed-stop'), ...FAST });
    expect(check(report, 'lifecycle.table').message).toMatch(/^1 \(status, method\) pair disagrees .*vm\/stop in crashed: answered InvalidState, but the state machine requires it to be accepted/);
    expect(failed(report)).toEqual(['lifecycle.table']);
    expectNothingLeft(report);
  });

  it('a guest that powers off by itself is an exited event with the published fields, and the VM stopped', async () => {
    const report = await runConformance({ command: fixture('broken-none'), ...FAST, powerOffConfig: POWER_OFF });
    expect(check(report, 'events.guest-poweroff').status).toBe('pass');
    expect(failed(report)).toEqual([]);
    expectNothingLeft(report);
  });

  it('without a way to make the guest power off, the check is skipped saying so', async () => {
    const report = await runConformance({ command: fixture('broken-none'), ...FAST, only: ['events.guest-poweroff'] });
    const c = check(report, 'events.guest-poweroff');
    expect(c.status).toBe('skipped');
    expect(c.reason).toMatch(/no power-off config.*--poweroff-config/);
  });

  it('a malformed exited event fails the power-off check, naming the fields', async () => {
    const report = await runConformance({ command: fixture('broken-exited-event'), ...FAST, powerOffConfig: POWER_OFF });
    const c = check(report, 'events.guest-poweroff');
    expect(c.message).toMatch(/exited event .*malformed/);
    expect(c.message).toMatch(/code: .*"0"/);
    expect(c.message).toMatch(/signal: .*missing/);
    expect(check(report, 'events.fields').message).toMatch(/exited event of VM \S+ \(seq \d+, during events.guest-poweroff\): .*signal/);
    expect(failed(report)).toEqual(['events.fields', 'events.guest-poweroff', 'wire.plugin-to-host']);
    expectNothingLeft(report);
  });

  it('a dropped event is reported as dropped and why; a bad time as unparseable, not out of order', async () => {
    const report = await runConformance({ command: fixture('broken-event-fields'), ...FAST });
    const created = check(report, 'events.vm/create').message ?? '';
    expect(created).toMatch(/a created event arrived but the host dropped it as malformed: seq: .*"0"/);
    const fields = check(report, 'events.fields').message ?? '';
    expect(fields).toMatch(/running event .*time "yesterday" is not a date \(RFC 3339\)/);
    expect(failed(report)).toEqual(['events.fields', 'events.vm/create', 'wire.plugin-to-host']);
    // Every message is in the report's files; the console summary abbreviates, saying how many more.
    const wire = check(report, 'wire.plugin-to-host').message ?? '';
    const count = Number(/^(\d+) message/.exec(wire)?.[1]);
    expect(count).toBeGreaterThan(5);
    expect(wire.split('\n').length).toBe(count + 1);
    expect(toJunit(report).split('vm/event params').length - 1).toBeGreaterThanOrEqual(count);
    expect(formatSummary(report)).toMatch(/\.\.\. and \d+ more lines \(all of them in the JSON and JUnit reports\)/);
    expectNothingLeft(report);
  });
});

describe('the plugin keeps answering', () => {
  it('health/ping unanswered while vm/stop blocks the plugin fails the ping check', async () => {
    const report = await runConformance({ command: fixture('broken-busy-stop'), ...FAST, only: ['health', 'lifecycle.vm/stop'] });
    expect(check(report, 'health.ping-during-stop').message).toMatch(/health\/ping was not answered within 2000 ms while vm\/stop ran/);
    expect(failed(report)).toEqual(['health.ping-during-stop']);
    expectNothingLeft(report);
  });

  it('a request answered before initialize fails the before-initialize check', async () => {
    const report = await runConformance({ command: fixture('broken-before-init'), ...FAST });
    expect(check(report, 'handshake.before-initialize').message).toMatch(/vm\/info before initialize was answered with a result .*InvalidRequest/);
    // Its made-up result is no vm/info result either: the wire check says so.
    expect(failed(report)).toEqual(['handshake.before-initialize', 'wire.plugin-to-host']);
    expectNothingLeft(report);
  });

  it('an unknown method answered with a result fails the unknown-method check', async () => {
    const report = await runConformance({ command: fixture('broken-unknown-method'), ...FAST });
    expect(check(report, 'method.unknown.refused').message).toMatch(/an unknown method: expected a MethodNotFound error, but it succeeded/);
    expect(failed(report)).toEqual(['method.unknown.refused']);
    expectNothingLeft(report);
  });
});

describe('messages that say what was wrong', () => {
  it('malformed error data is reported as the plugin sent it', async () => {
    const report = await runConformance({ command: fixture('broken-error-data'), ...FAST });
    const remove = check(report, 'device.remove-unknown').message ?? '';
    expect(remove).toMatch(/data as sent: .*"path":"deviceId"/);
    expect(remove).toMatch(/issues\.0\.path/);
    const start = check(report, 'lifecycle.vm/start.from-running').message ?? '';
    expect(start).not.toMatch(/current status \?/);
    expect(start).toMatch(/required: .*"created"/);
    // lifecycle.table sees the same malformed InvalidState data on every forbidden pair it tries.
    expect(check(report, 'lifecycle.table').message).toMatch(/InvalidState/);
    expect(failed(report)).toEqual(['device.remove-unknown', 'lifecycle.table', 'lifecycle.vm/start.from-running', 'wire.plugin-to-host']);
    expectNothingLeft(report);
  });
});

describe('hvplug run', () => {
  it('ends when the guest powers off even though the exited event is malformed, saying so', async () => {
    const dir = await tempDir('hvplug-run-malformed-');
    const toml = join(dir, 'plugins.toml');
    await writeFile(toml, `[plugins.bad]\ncommand = ${JSON.stringify(fixture('broken-exited-event'))}\n`);
    const vmJson = join(dir, 'vm.json');
    await writeFile(vmJson, JSON.stringify(POWER_OFF));
    const r = await execa('node', [CLI, '--config', toml, 'run', '--plugin', 'bad', '--vm-config', vmJson], {
      reject: false,
      timeout: 30_000,
      env: { HVPLUG_CONFIG: '', HVPLUG_STATE_DIR: dir, HVPLUG_RUNTIME_DIR: dir, NO_COLOR: '1' },
    });
    expect(r.timedOut, `hung:\n${r.stdout}\n${r.stderr}`).toBe(false);
    expect(r.stderr + r.stdout).toMatch(/dropped as malformed.*signal/s);
    expect(r.stdout + r.stderr).toMatch(/vm deleted/);
  }, 40_000);
});
