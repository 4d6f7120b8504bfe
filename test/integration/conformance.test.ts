import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GATED_METHODS } from 'hvplug/protocol';
import {
  matches,
  parseExpectedFailures,
  runConformance,
  SESSION_METHOD_CHECKS,
  toJunit,
  type Report,
} from 'hvplug/conformance';
import { main } from '../../src/cli/cli.js';
import { BUNDLED_POWEROFF } from '../../src/cli/conformance.js';
import { root } from '../../scripts/bundle.mjs';
import { alive, fixture, pluginExecutable, removeTempDirs, tempDir } from '../helpers.js';

const PYTHON_PLUGIN = join(root, 'examples/python/hvplug_plugin_mini.py');
const PYTHON_ADVERTISES = ['vm/create', 'vm/start', 'vm/stop', 'vm/delete', 'vm/info', 'vm/wait'];

function byId(report: Report): Map<string, Report['checks'][number]> {
  return new Map(report.checks.map((c) => [c.id, c]));
}

function expectNothingLeft(report: Report): void {
  expect(report.pids.filter(alive)).toEqual([]);
}

afterAll(removeTempDirs);

describe('example-proprietary, which advertises everything', () => {
  let report: Report;
  beforeAll(async () => {
    // The power-off config the CLI gives this plugin by default, so that its guest power-off is checked too.
    report = await runConformance({ command: pluginExecutable('example-proprietary'), powerOffConfig: BUNDLED_POWEROFF['example-proprietary'] });
  }, 60_000);

  it('passes every check, none skipped', () => {
    const notPassed = report.checks.filter((c) => c.status !== 'pass').map((c) => `${c.id}: ${c.status} ${c.message ?? c.reason ?? ''}`);
    expect(notPassed).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('ran the checks drawn from the whole method table and every device type', () => {
    const ids = byId(report);
    for (const m of GATED_METHODS) {
      expect(ids.get(`method.${m}.valid`)?.status, m).toBe('pass');
      expect(ids.get(`method.${m}.invalid`)?.status, m).toBe('pass');
      // Advertised, so there is nothing to refuse.
      expect(ids.has(`method.${m}.refused`)).toBe(false);
    }
    for (const id of Object.values(SESSION_METHOD_CHECKS)) expect(ids.get(id)?.status, id).toBe('pass');
    // Three per device type, and the unknown device id.
    expect(report.checks.filter((c) => c.group === 'device')).toHaveLength(31);
    expect(ids.get('device.remove-unknown')?.status).toBe('pass');
    expect(ids.get('recover.reattach')?.status).toBe('pass');
    expect(ids.get('snapshot.save-restore')?.status).toBe('pass');
  });

  it('leaves no plugin or VM process behind', () => {
    // VMs are real processes here: the report knows their pids from vm/info and vm/pids.
    expect(report.pids.length).toBeGreaterThan(5);
    expectNothingLeft(report);
  });

  it('writes valid JUnit XML with the right counts and escaping', () => {
    const spoiled: Report = {
      ...report,
      checks: [
        ...report.checks,
        { id: 'x.fail', title: 'a <failing> check', group: 'x', verifies: 'quotes " and \' & ampersands', status: 'fail', message: 'bad <tag> & "quote"\nsecond line', durationMs: 5 },
        { id: 'x.skip', title: 'skipped', group: 'x', verifies: 'v', status: 'skipped', reason: 'vm/pause not advertised', durationMs: 0 },
        { id: 'x.expected', title: 'expected', group: 'x', verifies: 'v', status: 'fail', message: 'known', expectedFailure: true, durationMs: 1 },
      ],
    };
    const xml = toJunit(spoiled);
    const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (name) => ['testsuite', 'testcase'].includes(name) }).parse(xml) as {
      testsuites: {
        tests: string;
        failures: string;
        skipped: string;
        testsuite: { name: string; tests: string; failures: string; skipped: string; testcase: { name: string; failure?: { message: string; '#text': string }; skipped?: { message: string } }[] }[];
      };
    };
    const suites = doc.testsuites.testsuite;
    expect(Number(doc.testsuites.tests)).toBe(report.checks.length + 3);
    expect(Number(doc.testsuites.failures)).toBe(1);
    expect(Number(doc.testsuites.skipped)).toBe(2);
    expect(suites.reduce((n, s) => n + s.testcase.length, 0)).toBe(report.checks.length + 3);
    for (const s of suites) expect(Number(s.tests)).toBe(s.testcase.length);
    const x = suites.find((s) => s.name.endsWith('.x'));
    const failing = x?.testcase.find((t) => t.name === 'x.fail');
    expect(failing?.failure?.message).toBe('bad <tag> & "quote"');
    expect(failing?.failure?.['#text']).toContain('second line');
    expect(x?.testcase.find((t) => t.name === 'x.skip')?.skipped?.message).toBe('vm/pause not advertised');
    expect(x?.testcase.find((t) => t.name === 'x.expected')?.skipped?.message).toMatch(/^expected failure/);
  });
});

describe('a plugin in Python, standard library only, advertising a subset', () => {
  let report: Report;
  beforeAll(async () => {
    report = await runConformance({ command: PYTHON_PLUGIN });
  }, 60_000);

  it('advertises exactly its subset and one device type, cold-plug only', () => {
    expect([...(report.capabilities?.methods ?? [])].sort()).toEqual([...PYTHON_ADVERTISES].sort());
    expect(report.capabilities?.devices).toEqual({ rng: { coldplug: true, hotplug: false, hotunplug: false } });
  });

  it('passes every check for what it advertises', () => {
    expect(report.checks.filter((c) => c.status === 'fail').map((c) => `${c.id}: ${c.message}`)).toEqual([]);
    const ids = byId(report);
    for (const m of PYTHON_ADVERTISES) {
      expect(ids.get(`method.${m}.valid`)?.status, m).toBe('pass');
      expect(ids.get(`method.${m}.invalid`)?.status, m).toBe('pass');
    }
    for (const id of ['device.rng.coldplug', 'cancel.reaches-handler', 'events.vmm-exit', 'concurrency.vms', 'process.exit-on-eof', 'wire.plugin-to-host', 'handshake.version-refusal']) {
      expect(ids.get(id)?.status, id).toBe('pass');
    }
    expect(report.ok).toBe(true);
  });

  it('refuses what it does not advertise, and the suite skips the rest saying why', () => {
    const ids = byId(report);
    for (const m of GATED_METHODS.filter((x) => !PYTHON_ADVERTISES.includes(x))) {
      expect(ids.get(`method.${m}.refused`)?.status, m).toBe('pass');
      expect(ids.get(`method.${m}.valid`)).toMatchObject({ status: 'skipped', reason: `${m} not advertised` });
    }
    expect(ids.get('device.rng.hotplug')).toMatchObject({ status: 'skipped', reason: 'rng devices cannot be hot-plugged (capabilities)' });
    expect(ids.get('device.block.coldplug')).toMatchObject({ status: 'skipped', reason: 'block devices not advertised' });
    expect(ids.get('lifecycle.vm/pause.from-running')).toMatchObject({ status: 'skipped', reason: 'vm/pause not advertised' });
    const skipped = report.checks.filter((c) => c.status === 'skipped');
    expect(skipped.length).toBeGreaterThan(50);
    expect(skipped.filter((c) => !c.reason)).toEqual([]);
    expectNothingLeft(report);
  });
});

describe('selection, expected failures, interruption', () => {
  it('an interrupted run stops after the running check, cleans up and is not ok', async () => {
    const stop = new AbortController();
    const report = await runConformance({
      command: PYTHON_PLUGIN,
      only: ['method.vm/create', 'method.vm/stop', 'method.vm/info'],
      signal: stop.signal,
      onProgress: (e) => e.type === 'check-start' && e.id === 'method.vm/stop.valid' && stop.abort(),
    });
    expect(report.interrupted).toBe(true);
    expect(report.ok).toBe(false);
    expect(report.checks.map((c) => c.id)).toEqual(['method.vm/create.valid', 'method.vm/create.invalid', 'method.vm/stop.valid']);
    expect(report.checks.at(-1)).toMatchObject({ status: 'fail', message: 'the run was interrupted' });
    expectNothingLeft(report);
  });

  it('selects by id, dotted prefix, group and wildcard', () => {
    expect(matches('method.vm/pause.valid', 'method.vm/pause')).toBe(true);
    expect(matches('method.vm/pause.valid', 'method')).toBe(true);
    expect(matches('method.vm/pauses.valid', 'method.vm/pause')).toBe(false);
    expect(matches('method.vm/pause.valid', 'method.*.valid')).toBe(true);
    expect(matches('method.vm/pause.invalid', 'method.*.valid')).toBe(false);
    expect(parseExpectedFailures('# known\nevents.vm/start\n\n  cancel.reaches-handler  # flaky VMM\n')).toEqual(['events.vm/start', 'cancel.reaches-handler']);
    expect(parseExpectedFailures('["a.b", "c.d"]')).toEqual(['a.b', 'c.d']);
  });

  it('an expected failure does not fail the run; one that passes does; unknown ids are reported', async () => {
    const command = fixture('broken-result-shape');
    const only = ['method.vm/info', 'handshake.initialize'];
    const tolerated = await runConformance({ command, only, expectedFailures: ['method.vm/info.valid', 'no.such.check'] });
    expect(tolerated.checks.map((c) => c.id)).toEqual(['handshake.initialize', 'method.vm/info.valid', 'method.vm/info.invalid']);
    expect(byId(tolerated).get('method.vm/info.valid')).toMatchObject({ status: 'fail', expectedFailure: true });
    expect(tolerated.summary).toMatchObject({ total: 3, passed: 2, failed: 0, expectedFailures: 1 });
    expect(tolerated.ok).toBe(true);
    expect(tolerated.unknownExpectedFailures).toEqual(['no.such.check']);

    const stale = await runConformance({ command, only, skip: ['method.vm/info.valid'], expectedFailures: ['method.vm/info.invalid'] });
    expect(stale.checks.map((c) => c.id)).toEqual(['handshake.initialize', 'method.vm/info.invalid']);
    expect(byId(stale).get('method.vm/info.invalid')).toMatchObject({ status: 'fail', message: expect.stringMatching(/expected failure, but it passed/) });
    expect(stale.summary).toMatchObject({ failed: 1, expectedFailures: 0 });
    expect(stale.ok).toBe(false);
  });
});

/** The command as the dispatcher runs it, in this process. */
const runConformanceCommand = (argv: string[]): Promise<number> => main(['conformance', ...argv]);

describe('hvplug conformance (the command)', () => {
  it('runs a plugin given after --, writes JSON and JUnit, exits 0 when conformant', async () => {
    const dir = await tempDir();
    const json = join(dir, 'report.json');
    const junit = join(dir, 'report.xml');
    const code = await runConformanceCommand(['--quiet', '--only', 'handshake,method.vm/create', '--report', json, '--junit', junit, '--', PYTHON_PLUGIN]);
    expect(code).toBe(0);
    const report = JSON.parse(await readFile(json, 'utf8')) as Report;
    expect(report.checks.map((c) => c.id)).toEqual([
      'handshake.initialize',
      'handshake.version-refusal',
      'handshake.version-negotiation',
      'handshake.before-initialize',
      'method.vm/create.valid',
      'method.vm/create.invalid',
    ]);
    expect(await readFile(junit, 'utf8')).toMatch(/^<\?xml[^]*<testsuites [^>]*tests="6" failures="0"/);
  });

  it('finds a plugin by name as the host does (--plugin)', async () => {
    const dir = await tempDir();
    const json = join(dir, 'report.json');
    expect(await runConformanceCommand(['--quiet', '--plugin', 'example-proprietary', '--only', 'handshake.initialize', '--report', json])).toBe(0);
    const report = JSON.parse(await readFile(json, 'utf8')) as Report;
    expect(report.plugin.info?.name).toBe('example-proprietary');
    expect(report.plugin.command).toBe(pluginExecutable('example-proprietary'));
    expect(await runConformanceCommand(['--quiet', '--plugin', 'no-such-plugin'])).toBe(1);
  });

  it('exits 1 on an unexpected failure, 0 once it is expected, 2 on a usage error', async () => {
    const dir = await tempDir();
    const expected = join(dir, 'expected.txt');
    await writeFile(expected, 'method.vm/info.valid\n');
    const args = ['--quiet', '--only', 'method.vm/info.valid', '--', fixture('broken-result-shape')];
    expect(await runConformanceCommand(args)).toBe(1);
    expect(await runConformanceCommand(['--expected-failures', expected, ...args])).toBe(0);
    expect(await runConformanceCommand(['--quiet'])).toBe(2);
    expect(await runConformanceCommand(['--plugin', 'x', '--', 'y'])).toBe(2);
    expect(await runConformanceCommand(['--frobnicate'])).toBe(2);
  });
});
