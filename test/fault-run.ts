import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { expect } from 'vitest';
import { FileStateStore } from 'hvplug';
import { root } from '../scripts/bundle.mjs';
import { FaultModel, liveByVmId, readJournal, type JournalEntry } from './fault-model.js';
import { alive, eventually, pluginExecutable } from './helpers.js';

/**
 * The harness of the fault tests: host processes of their own (test/fixtures/hosts/workload.mjs) run mutating calls
 * on a plugin's VMs and SIGKILL that plugin at random moments; each host is itself SIGKILLed at a random moment
 * and a new one started on the same directories. After each host death, the state store and /proc are checked
 * against what the hosts' journal says had returned (FaultModel).
 */
const CORE = new URL('../dist/src/core/index.js', import.meta.url).href;
const WORKLOAD = join(root, 'test/fixtures/hosts/workload.mjs');

export interface FaultSetup {
  plugin: string;
  /** The vm/create config of every VM. */
  config: Record<string, unknown>;
  /** How many VMs a host keeps, and how many calls it has under way at once. */
  target: number;
  workers: number;
  /** Each plugin process is SIGKILLed this long after it starts (half the restarted ones sooner, mid re-attach). */
  pluginKill: { minMs: number; maxMs: number };
  /** How long a host lives, once it has re-attached, before it is SIGKILLed. */
  hostLifeMs: { minMs: number; maxMs: number };
  /** Text on the command line of every guest process of the run (besides the VM id). */
  guestMarks: (runtimeDir: string) => string[];
}

export interface FaultRun {
  setup: FaultSetup;
  stateDir: string;
  runtimeDir: string;
  journal: string;
  prefix: string;
  model: FaultModel;
  offset: number;
  seed: number;
  /** Time from a host's spawn to its re-attach done, summed over hosts. */
  readyMs: number;
}

export function newRun(setup: FaultSetup, dir: string): FaultRun {
  return {
    setup,
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    journal: join(dir, 'journal.ndjson'),
    prefix: `f${process.pid}`,
    model: new FaultModel(),
    offset: 0,
    seed: Number(process.env.HVPLUG_FAULT_SEED ?? Date.now() % 2 ** 31),
    readyMs: 0,
  };
}

function hostArgs(run: FaultRun, extra: Record<string, unknown>): string {
  const s = run.setup;
  return JSON.stringify({
    core: CORE,
    stateDir: run.stateDir,
    runtimeDir: run.runtimeDir,
    plugin: { name: s.plugin, command: pluginExecutable(s.plugin) },
    journal: run.journal,
    prefix: run.prefix,
    target: s.target,
    workers: s.workers,
    config: s.config,
    pluginKill: s.pluginKill,
    seed: run.seed++,
    ...extra,
  });
}

/** Reads what the journal gained since the last look into the model. */
export function absorb(run: FaultRun): JournalEntry[] {
  const { entries, offset } = readJournal(run.journal, run.offset);
  run.offset = offset;
  for (const e of entries) run.model.apply(e);
  return entries;
}

/** Live guests of this run, by VM id. */
export function guests(run: FaultRun): Map<string, number[]> {
  return liveByVmId(new RegExp(`\\b(${run.prefix}-[a-z0-9]+)\\b`), run.setup.guestMarks(run.runtimeDir));
}

/** Once a host is dead and its plugins are gone too, the store and /proc must agree with the journal. */
export async function check(run: FaultRun, when: string): Promise<void> {
  const pids = [...run.model.pluginPids];
  await eventually(() => pids.every((p) => !alive(p)), 15_000, `the plugins of a dead host to exit (${pids.filter(alive).join(',')})`);
  const { records, errors } = await new FileStateStore(run.stateDir).list();
  expect(errors, when).toEqual([]);
  const broken = run.model.violations(records, guests(run));
  expect(broken, `${when}\n${run.model.explain(broken)}`).toEqual([]);
  run.model.counts.checks++;
}

export function spawnHost(run: FaultRun, extra: Record<string, unknown> = {}): ResultPromise<{ stdout: 'ignore'; stderr: 'pipe'; reject: false }> {
  return execa('node', [WORKLOAD, hostArgs(run, extra)], { stdout: 'ignore', stderr: 'pipe', reject: false });
}

async function untilReady(run: FaultRun, child: ReturnType<typeof spawnHost>): Promise<void> {
  let exited = false;
  void child.then(() => (exited = true));
  await eventually(
    () => {
      if (exited) return true;
      const { entries } = readJournal(run.journal, run.offset);
      return entries.some((e) => e.t === 'ready' && e.host === child.pid);
    },
    60_000,
    'the host to re-attach',
  );
  if (exited) throw new Error(`the host exited on its own: ${(await child).stderr}`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Hosts started, left to run, SIGKILLed and checked, until both counts are reached (or maxHostKills). */
export async function killRounds(run: FaultRun, want: { hostKills: number; pluginKills: number; maxHostKills: number }): Promise<void> {
  const counts = run.model.counts;
  const { minMs, maxMs } = run.setup.hostLifeMs;
  while ((counts.hostKills < want.hostKills || counts.pluginKills < want.pluginKills) && counts.hostKills < want.maxHostKills) {
    const child = spawnHost(run);
    const spawned = Date.now();
    await untilReady(run, child);
    run.readyMs += Date.now() - spawned;
    await sleep(minMs + Math.random() * (maxMs - minMs));
    child.kill('SIGKILL');
    await child;
    counts.hostKills++;
    absorb(run);
    await check(run, `after host kill ${counts.hostKills}`);
  }
}

/** A last host deletes every VM: nothing may be left, record or process. */
export async function cleanup(run: FaultRun): Promise<void> {
  const last = await spawnHost(run, { cleanup: true });
  expect(last.exitCode, last.stderr).toBe(0);
  const entries = absorb(run);
  expect(entries.find((e) => e.t === 'cleaned')).toMatchObject({ left: [] });
  await check(run, 'after the cleanup');
  expect((await new FileStateStore(run.stateDir).list()).records).toEqual([]);
  expect([...guests(run).keys()]).toEqual([]);
}

/** The counts for the test's output. */
export function summary(run: FaultRun, label: string, t0: number): string {
  const c = run.model.counts;
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  return (
    `fault test (${label}): ${c.hostKills} host kills, ${c.pluginKills} plugin kills, ${c.calls} calls ` +
    `(${c.ok} returned, ${c.failed} failed: ${JSON.stringify(Object.fromEntries(run.model.errorNames))}), ` +
    `${run.model.vms.size} VM ids, ${c.checks} checks, ${seconds} s (a host up and re-attached in ${Math.round(run.readyMs / Math.max(1, c.hostKills))} ms on average)\n` +
    `one error of each kind: ${JSON.stringify(Object.fromEntries(run.model.errorSamples), null, 1)}`
  );
}
