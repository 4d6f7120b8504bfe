import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStateStore } from 'hvplug';
import { root } from '../scripts/bundle.mjs';
import { FaultModel, liveByVmId, readJournal, type JournalEntry } from './fault-model.js';
import { alive, ensureCliBuilt, eventually, pluginExecutable, removeTempDirs, tempDir } from './helpers.js';

/**
 * The fault test of the VM records: a host in a process of its own runs mutating calls (create, start, device
 * add/remove, pause/resume, stop, delete) on up to 50 VMs of the example plugin, SIGKILLs its own plugin at random
 * moments, and is itself SIGKILLed at random moments and started again on the same directories. After each host
 * death, the state store and /proc are checked against what the host's journal says had returned (FaultModel).
 */
const CORE = new URL('../dist/src/core/index.js', import.meta.url).href;
const WORKLOAD = join(root, 'test/fixtures/hosts/workload.mjs');
const PLUGIN = 'example-proprietary';
const GUEST_TITLE = 'hvplug-example-guest';

beforeAll(ensureCliBuilt, 120_000);
afterAll(removeTempDirs);

interface Run {
  stateDir: string;
  runtimeDir: string;
  journal: string;
  prefix: string;
  model: FaultModel;
  offset: number;
  seed: number;
}

function hostArgs(run: Run, extra: Record<string, unknown>): string {
  return JSON.stringify({
    core: CORE,
    stateDir: run.stateDir,
    runtimeDir: run.runtimeDir,
    plugin: { name: PLUGIN, command: pluginExecutable(PLUGIN) },
    journal: run.journal,
    prefix: run.prefix,
    target: 50,
    workers: 8,
    config: { plugin: { tickMs: 1_000 } },
    pluginKill: { minMs: 100, maxMs: 300 },
    seed: run.seed++,
    ...extra,
  });
}

/** Reads what the journal gained since the last look into the model. */
function absorb(run: Run): JournalEntry[] {
  const { entries, offset } = readJournal(run.journal, run.offset);
  run.offset = offset;
  for (const e of entries) run.model.apply(e);
  return entries;
}

/** Live guests of this run, by VM id: the title a guest gives itself, or its argv before it does. */
function guests(run: Run): Map<string, number[]> {
  return liveByVmId(new RegExp(`\\b(${run.prefix}-[a-z0-9]+)\\b`), [GUEST_TITLE, `${run.runtimeDir}/`]);
}

/** Once a host is dead and its plugins are gone too, the store and /proc must agree with the journal. */
async function check(run: Run, when: string): Promise<void> {
  const pids = [...run.model.pluginPids];
  await eventually(() => pids.every((p) => !alive(p)), 15_000, `the plugins of a dead host to exit (${pids.filter(alive).join(',')})`);
  const { records, errors } = await new FileStateStore(run.stateDir).list();
  expect(errors, when).toEqual([]);
  const broken = run.model.violations(records, guests(run));
  expect(broken, `${when}\n${run.model.explain(broken)}`).toEqual([]);
  run.model.counts.checks++;
}

function spawnHost(run: Run, extra: Record<string, unknown> = {}): ResultPromise<{ stdout: 'ignore'; stderr: 'pipe'; reject: false }> {
  return execa('node', [WORKLOAD, hostArgs(run, extra)], { stdout: 'ignore', stderr: 'pipe', reject: false });
}

async function untilReady(run: Run, child: ReturnType<typeof spawnHost>): Promise<void> {
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

describe('fault test: host and plugin SIGKILLed under a workload of mutating calls', () => {
  it('50 VMs of the example plugin: ≥ 200 plugin kills, ≥ 50 host kills, no record lost, no guest orphaned', async () => {
    const dir = await tempDir('hvplug-fault-');
    const run: Run = {
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      journal: join(dir, 'journal.ndjson'),
      prefix: `f${process.pid}`,
      model: new FaultModel(),
      offset: 0,
      seed: Number(process.env.HVPLUG_FAULT_SEED ?? Date.now() % 2 ** 31),
    };
    console.log(`fault test seed ${run.seed} (HVPLUG_FAULT_SEED replays it)`);
    const t0 = Date.now();
    const counts = run.model.counts;
    let readyMs = 0;
    while ((counts.hostKills < 50 || counts.pluginKills < 200) && counts.hostKills < 120) {
      const child = spawnHost(run);
      const spawned = Date.now();
      await untilReady(run, child);
      readyMs += Date.now() - spawned;
      await sleep(300 + Math.random() * 1_200);
      child.kill('SIGKILL');
      await child;
      counts.hostKills++;
      absorb(run);
      await check(run, `after host kill ${counts.hostKills}`);
    }
    // A last host deletes every VM: nothing may be left, record or process.
    const last = await spawnHost(run, { cleanup: true });
    expect(last.exitCode, last.stderr).toBe(0);
    const entries = absorb(run);
    expect(entries.find((e) => e.t === 'cleaned')).toMatchObject({ left: [] });
    await check(run, 'after the cleanup');
    expect((await new FileStateStore(run.stateDir).list()).records).toEqual([]);
    expect([...guests(run).keys()]).toEqual([]);
    const seconds = ((Date.now() - t0) / 1000).toFixed(1);
    console.log(
      `fault test (example plugin): ${counts.hostKills} host kills, ${counts.pluginKills} plugin kills, ${counts.calls} calls ` +
        `(${counts.ok} returned, ${counts.failed} failed: ${JSON.stringify(Object.fromEntries(run.model.errorNames))}), ` +
        `${run.model.vms.size} VM ids, ${counts.checks} checks, ${seconds} s (a host up and re-attached in ${Math.round(readyMs / counts.hostKills)} ms on average)`,
    );
    console.log(`one error of each kind: ${JSON.stringify(Object.fromEntries(run.model.errorSamples), null, 1)}`);
    expect(counts.hostKills).toBeGreaterThanOrEqual(50);
    expect(counts.pluginKills).toBeGreaterThanOrEqual(200);
  }, 300_000);
});
