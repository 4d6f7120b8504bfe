import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import pino from 'pino';
import { HOST_VERSION, outlived, PluginSpec } from 'hvplug';
import { GATED_METHODS, type Capabilities, type InitializeResult } from 'hvplug/protocol';
import { CheckFailure, describeError, groupOf, SkipCheck, type CheckDef } from './check.js';
import { EventLog } from './event-log.js';
import { Fixture, type ResolvedOptions, type RunContext } from './fixture.js';
import { Janitor } from './janitor.js';
import { selected } from './selection.js';
import { PluginSession } from './session.js';
import { buildSuite } from './suite.js';
import type { CheckResult, ConformanceOptions, Report, Summary } from './types.js';
import { WireMonitor } from './wire-monitor.js';

/** How long a run waits, at its end, for the processes it SIGKILLed to be gone before it returns. */
const KILLED_EXIT_WAIT_MS = 5_000;

/** Calls have no default of the suite's own: each method's deadline comes from the method table. */
export const DEFAULTS = { checkTimeoutMs: 60_000, exitDeadlineMs: 3_000 } as const satisfies Partial<ResolvedOptions>;

/** A plugin name the host accepts, from the command that runs it. */
function nameOf(command: string): string {
  const name = basename(command).toLowerCase().replace(/[^a-z0-9._-]/g, '-').replace(/^[^a-z0-9]+/, '');
  return name || 'plugin';
}

/** Why a check cannot run with these capabilities, if it cannot. */
function skipReason(check: CheckDef, caps: Capabilities): string | undefined {
  if (check.skip) return check.skip;
  const missing = check.needs?.find((m) => GATED_METHODS.includes(m) && !caps.methods.includes(m));
  if (!missing) return undefined;
  // The first need is the method the check is about; the others only set the scene.
  return missing === check.needs?.[0] ? `${missing} not advertised` : `needs ${missing}, which is not advertised`;
}

async function runCheck(check: CheckDef, run: RunContext, index: number, stop?: AbortSignal): Promise<CheckResult> {
  const base = { id: check.id, title: check.title, group: groupOf(check.id), verifies: check.verifies };
  const reason = skipReason(check, run.caps);
  if (reason) return { ...base, status: 'skipped', reason, durationMs: 0 };
  const started = Date.now();
  run.wire.check = check.id;
  const conn = await run.session.ensureMain().catch((err: unknown) => err as Error);
  if (conn instanceof Error) {
    return { ...base, status: 'fail', message: `the plugin could not be restarted: ${describeError(conn)}`, durationMs: Date.now() - started };
  }
  const deadline = run.options.checkTimeoutMs;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new CheckFailure(`the check did not finish within ${deadline} ms`)), deadline);
  const interrupt = (): void => ac.abort(new CheckFailure('the run was interrupted'));
  if (stop?.aborted) interrupt();
  else stop?.addEventListener('abort', interrupt, { once: true });
  const fx = new Fixture(check.id, index, run, conn, ac.signal);
  // Both settle after the race in some outcomes; neither may surface as an unhandled rejection.
  const running = ac.signal.aborted ? Promise.reject(ac.signal.reason as Error) : check.run(fx);
  running.catch(() => undefined);
  const aborted = new Promise<never>((_, reject) => ac.signal.addEventListener('abort', () => reject(ac.signal.reason), { once: true }));
  aborted.catch(() => undefined);
  let result: CheckResult;
  try {
    await Promise.race([running, aborted]);
    result = { ...base, status: 'pass', durationMs: 0 };
  } catch (caught) {
    // A deadline or an interrupt is the cause; the call it cancelled only reports the consequence.
    const err: unknown = ac.signal.aborted ? ac.signal.reason : caught;
    if (err instanceof SkipCheck) result = { ...base, status: 'skipped', reason: err.message, durationMs: 0 };
    else result = { ...base, status: 'fail', message: err instanceof CheckFailure ? err.message : describeError(err), durationMs: 0 };
  } finally {
    clearTimeout(timer);
    stop?.removeEventListener('abort', interrupt);
    // Whatever the check left in flight stops now, before its VMs are deleted under it.
    ac.abort(new CheckFailure('the check is over'));
    await fx.cleanup();
  }
  result.durationMs = Date.now() - started;
  return result;
}

function applyExpected(r: CheckResult, expected: ReadonlySet<string>): CheckResult {
  if (!expected.has(r.id)) return r;
  if (r.status === 'fail') return { ...r, expectedFailure: true };
  if (r.status === 'pass') {
    return { ...r, status: 'fail', message: 'listed as an expected failure, but it passed: take it off the list' };
  }
  return r;
}

function summarize(checks: readonly CheckResult[]): Summary {
  return {
    total: checks.length,
    passed: checks.filter((c) => c.status === 'pass').length,
    failed: checks.filter((c) => c.status === 'fail' && !c.expectedFailure).length,
    skipped: checks.filter((c) => c.status === 'skipped').length,
    expectedFailures: checks.filter((c) => c.expectedFailure).length,
  };
}

/**
 * Runs the conformance suite against one plugin executable, through the real host client and shim,
 * and answers the report. Whatever the plugin does, the run finishes and leaves no process, VM or
 * file of its own behind.
 */
export async function runConformance(options: ConformanceOptions): Promise<Report> {
  const startedAt = new Date();
  const resolved: ResolvedOptions = {
    callTimeoutMs: options.callTimeoutMs,
    checkTimeoutMs: options.checkTimeoutMs ?? DEFAULTS.checkTimeoutMs,
    exitDeadlineMs: options.exitDeadlineMs ?? DEFAULTS.exitDeadlineMs,
    vmConfig: options.vmConfig,
    powerOffConfig: options.powerOffConfig,
  };
  const workDir = await mkdtemp(join(options.workDir ?? tmpdir(), 'hvplug-conf-'));
  const stateDir = join(workDir, 'state');
  const runtimeDir = join(workDir, 'run');
  await mkdir(stateDir, { mode: 0o700 });
  await mkdir(runtimeDir, { mode: 0o700 });
  const wire = new WireMonitor();
  const events = new EventLog(wire);
  const spec = PluginSpec.parse({
    name: nameOf(options.connect === undefined ? options.command : 'listening-plugin'),
    ...(options.connect === undefined ? { command: options.command } : { connect: options.connect, tls: options.tls }),
    args: [...(options.args ?? [])],
    env: { ...options.env },
    envPassthrough: [...(options.envPassthrough ?? [])],
    sha256: options.sha256,
    source: 'conformance',
  });
  const logger = options.logger ?? pino({ level: 'silent' });
  const session = new PluginSession(spec, { stateDir, runtimeDir, logger, logLevel: 'info', hostVersion: HOST_VERSION }, wire, resolved.exitDeadlineMs);
  const expected = new Set(options.expectedFailures ?? []);
  const results: CheckResult[] = [];
  let info: InitializeResult | undefined;
  let janitor: Janitor | undefined;
  let known = new Set<string>();
  try {
    wire.check = 'handshake.initialize';
    const t0 = Date.now();
    const main = await session.ensureMain().catch((err: unknown) => err as Error);
    if (main instanceof Error) {
      results.push(
        applyExpected(
          {
            id: 'handshake.initialize',
            title: 'the plugin starts and completes the handshake',
            group: 'handshake',
            verifies: 'Handshake: initialize answered with a valid result.',
            status: 'fail',
            message: `the plugin could not be started: ${describeError(main)}`,
            durationMs: Date.now() - t0,
          },
          expected,
        ),
      );
    } else {
      info = main.client.info;
      janitor = new Janitor(session, wire, events, info.capabilities, resolved.callTimeoutMs);
      const run: RunContext = {
        options: resolved,
        session,
        wire,
        events,
        janitor,
        info,
        caps: info.capabilities,
        workDir,
        stateDir,
        runtimeDir,
        runId: `conf${randomBytes(3).toString('hex')}`,
        counters: { vm: 0, cid: 0 },
      };
      const suite = buildSuite(info.capabilities);
      known = new Set(suite.map((c) => c.id));
      const chosen = suite.filter((c) => selected(c.id, options.only, options.skip));
      options.onProgress?.({ type: 'begin', total: chosen.length });
      for (const [index, check] of chosen.entries()) {
        if (options.signal?.aborted) break;
        options.onProgress?.({ type: 'check-start', id: check.id, title: check.title, index, total: chosen.length });
        const result = applyExpected(await runCheck(check, run, index, options.signal), expected);
        results.push(result);
        options.onProgress?.({ type: 'check-end', result, index, total: chosen.length });
      }
    }
  } finally {
    options.onProgress?.({ type: 'cleanup' });
    wire.check = 'teardown';
    await session.closeAll();
    const killed = [...session.processes.killAll(undefined, { group: true }), ...(janitor?.processes.killAll() ?? [])];
    await outlived(killed, KILLED_EXIT_WAIT_MS);
    await rm(workDir, { recursive: true, force: true });
  }
  const summary = summarize(results);
  const interrupted = options.signal?.aborted ?? false;
  return {
    plugin: { command: options.command, args: [...(options.args ?? [])], info: info?.plugin, protocolVersion: info?.protocolVersion },
    capabilities: info?.capabilities,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    checks: results,
    summary,
    unknownExpectedFailures: known.size ? [...expected].filter((id) => !known.has(id)) : [],
    pids: [...new Set([...session.processes.pids, ...(janitor?.processes.pids ?? [])])],
    interrupted,
    ok: summary.failed === 0 && !interrupted,
  };
}
