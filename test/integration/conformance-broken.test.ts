import { describe, expect, it } from 'vitest';
import { runConformance, type Report } from 'hvplug/conformance';
import { alive, fixture } from '../helpers.js';

/** Short deadlines: the faults below are waited out, and a conformant plugin needs far less. */
const FAST = { exitDeadlineMs: 1_000, callTimeoutMs: 5_000 };

function failed(report: Report): string[] {
  return report.checks.filter((c) => c.status === 'fail').map((c) => c.id);
}

function check(report: Report, id: string): Report['checks'][number] {
  const c = report.checks.find((x) => x.id === id);
  if (!c) throw new Error(`no check ${id} in the report`);
  return c;
}

/** Everything the run started or learned of is gone once it returns. */
function expectNothingLeft(report: Report): void {
  expect(report.pids.length).toBeGreaterThan(0);
  expect(report.pids.filter(alive)).toEqual([]);
}

describe('the suite against deliberately broken plugins', () => {
  it('passes the broken plugins\' shared core, which has no fault', async () => {
    const report = await runConformance({ command: fixture('broken-none'), ...FAST });
    expect(failed(report)).toEqual([]);
    expect(report.ok).toBe(true);
    expectNothingLeft(report);
  });

  it('a wrong result shape fails the method\'s check and the wire check, naming the fields', async () => {
    const report = await runConformance({ command: fixture('broken-result-shape'), ...FAST });
    const info = check(report, 'method.vm/info.valid');
    expect(info.status).toBe('fail');
    expect(info.message).toMatch(/vm\/info.*vcpus.*devices/s);
    const wire = check(report, 'wire.plugin-to-host');
    expect(wire.status).toBe('fail');
    expect(wire.message).toMatch(/vm\/info result .*vcpus/);
    // The fault is in the answers, not in the requests, the events or the process.
    for (const id of ['wire.host-to-plugin', 'events.order', 'process.stdout-clean', 'handshake.initialize', 'method.vm/info.invalid']) {
      expect(check(report, id).status, id).toBe('pass');
    }
    expect(report.ok).toBe(false);
    expectNothingLeft(report);
  });

  it('a missing event fails exactly the check for that event', async () => {
    const report = await runConformance({ command: fixture('broken-missing-event'), ...FAST });
    // lifecycle.table sees it too, holding vm/start to the table's events column.
    expect(failed(report).sort()).toEqual(['events.vm/start', 'lifecycle.table']);
    expect(check(report, 'events.vm/start').message).toMatch(/no running event arrived/);
    expect(check(report, 'lifecycle.table').message).toMatch(/vm\/start in created: succeeded, but the plugin sent no lifecycle event; the state machine says running/);
    expectNothingLeft(report);
  });

  it('a stray stdout print fails the stdout check, naming the bytes and the check it happened in', async () => {
    const report = await runConformance({ command: fixture('broken-stray-stdout'), ...FAST });
    const stdout = check(report, 'process.stdout-clean');
    expect(stdout.status).toBe('fail');
    expect(stdout.message).toContain('DEBUG starting vm');
    expect(stdout.message).toMatch(/during method\.vm\/start\.valid/);
    // The run went on past every death: the checks after it ran against a restarted plugin.
    expect(check(report, 'method.vm/info.valid').status).toBe('pass');
    expect(check(report, 'wire.plugin-to-host').status).toBe('pass');
    expectNothingLeft(report);
  });

  it('a method that ignores cancellation fails the cancellation check, and the run goes on', async () => {
    const report = await runConformance({ command: fixture('broken-hang'), ...FAST });
    const cancel = check(report, 'cancel.reaches-handler');
    expect(cancel.status).toBe('fail');
    expect(cancel.message).toMatch(/did not answer the cancelled vm\/wait.*ignores \$\/cancelRequest/);
    // Its vm/wait hangs on a created VM too, where the state machine says it answers at once.
    expect(failed(report).sort()).toEqual(['cancel.reaches-handler', 'lifecycle.table', 'method.vm/wait.valid']);
    expect(check(report, 'lifecycle.table').message).toMatch(/vm\/wait in created: vm\/wait did not answer within 5000 ms/);
    expect(check(report, 'process.shutdown').status).toBe('pass');
    expectNothingLeft(report);
  });

  it('a plugin that outlives stdin EOF fails the EOF check and is killed', async () => {
    const report = await runConformance({ command: fixture('broken-no-eof'), ...FAST });
    const eof = check(report, 'process.exit-on-eof');
    expect(eof.status).toBe('fail');
    expect(eof.message).toMatch(/still runs 1000 ms after its stdin ended/);
    // It ignores exit as well as EOF: shutdown fails too, every other check passes.
    expect(failed(report).sort()).toEqual(['process.exit-on-eof', 'process.shutdown']);
    expectNothingLeft(report);
  });

  it('an unknown device id answered with InvalidConfig fails the unknown-device check, and only that', async () => {
    const report = await runConformance({ command: fixture('broken-unknown-device'), ...FAST });
    expect(check(report, 'device.remove-unknown').message).toMatch(/expected a InvalidParams error, got .*InvalidConfig/);
    expect(failed(report)).toEqual(['device.remove-unknown']);
    expectNothingLeft(report);
  });

  it('net devices advertised without a net backend fail the handshake check, and every net device check', async () => {
    const report = await runConformance({ command: fixture('broken-net-backends'), ...FAST, only: ['handshake', 'device'] });
    expect(check(report, 'handshake.initialize').message).toMatch(/net devices are advertised but capabilities.netBackends is empty/);
    // The shim refuses each net device the suite builds: the plugin declared no backend for it.
    expect(check(report, 'device.net.coldplug').message).toMatch(/no user net backend \(it has none\)/);
    expect(failed(report).sort()).toEqual(['device.net.coldplug', 'handshake.initialize']);
    expectNothingLeft(report);
  });
});
