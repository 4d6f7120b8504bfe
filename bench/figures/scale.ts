import { join } from 'node:path';
import { PluginHost, type ShimHypervisor, type ShimVm, type SupervisionOptions } from 'hvplug';
import { silentLogger } from '../clients.js';
import { collect, hasGc } from '../drivers.js';
import type { Figure } from '../figure.js';
import { notMeasured } from '../figure.js';
import { compare, measure } from '../report.js';
import { builtPlugin } from '../setup.js';
import { latencyQuantiles } from '../stats.js';

export const EXAMPLE = 'example-proprietary';

/**
 * The VM config every bench VM uses: the example plugin's light guest process, nothing attached, ticking once a
 * minute (at the default 100 ms, 1,000 guests would keep the machine busy and the figure would measure them).
 */
export const BENCH_VM_CONFIG = { memory: { sizeMiB: 64 }, plugin: { tickMs: 60_000 } };

const MiB = 2 ** 20;

/** Runs `fn` over `items` with at most `limit` in flight, keeping result order. */
export async function inPool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export function exampleHost(dir: string, supervision: SupervisionOptions = {}): PluginHost {
  const plugin = builtPlugin(EXAMPLE);
  if (!plugin) throw new Error('the example plugin is not built');
  return new PluginHost({
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logger: silentLogger(),
    plugins: [{ name: EXAMPLE, command: plugin.executable }],
    supervision,
  });
}

interface Workload {
  /** µs per call, by phase. */
  latency: Record<'create' | 'start' | 'stop' | 'delete', number[]>;
  /** Host heap after gc(), before the first create, with every VM running, and after the last delete. */
  heap: { before: number; allRunning: number; after: number };
  wallMs: number;
}

async function timed<T>(sink: number[], fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await fn();
  sink.push((performance.now() - t0) * 1000);
  return r;
}

function heapUsed(): number {
  collect();
  collect();
  return process.memoryUsage().heapUsed;
}

/** VMs created and not yet deleted, so that a failure half-way does not leave guest processes behind. */
const live = new Set<ShimVm>();

/** create → start (all n running) → stop → delete, each phase over all n VMs with `concurrency` calls in flight. */
async function workload(hv: ShimHypervisor, n: number, concurrency: number): Promise<Workload> {
  const latency: Workload['latency'] = { create: [], start: [], stop: [], delete: [] };
  const ids = Array.from({ length: n }, (_, i) => i);
  const before = heapUsed();
  const t0 = performance.now();
  const vms: ShimVm[] = await inPool(ids, concurrency, async () => {
    const vm = await timed(latency.create, () => hv.createVm({ config: BENCH_VM_CONFIG }));
    live.add(vm);
    return vm;
  });
  await inPool(vms, concurrency, (vm) => timed(latency.start, () => vm.start()));
  const allRunning = heapUsed();
  await inPool(vms, concurrency, (vm) => timed(latency.stop, () => vm.stop({ graceMs: 2_000 })));
  await inPool(vms, concurrency, async (vm) => {
    await timed(latency.delete, () => vm.delete());
    live.delete(vm);
  });
  const wallMs = performance.now() - t0;
  return { latency, heap: { before, allRunning, after: heapUsed() }, wallMs };
}

const allCalls = (w: Workload): number[] => [...w.latency.create, ...w.latency.start, ...w.latency.stop, ...w.latency.delete];

/** Figure 4: one example plugin process driving many VMs. */
export const scale: Figure = {
  id: 'scale',
  title: '4 scale',
  async run({ ws, cfg, log }) {
    const { large, small, smallRuns, concurrency, reps } = cfg.scale;
    const method =
      `one example plugin process, PluginHost with its default file state store; per repetition ${large} VMs then ${smallRuns}× ${small} VMs ` +
      `(${4 * large} and ${4 * small * smallRuns} calls): create all → start all → stop all → delete all, ${concurrency} calls in flight; ` +
      `heap growth = heapUsed after gc() with all VMs running − before the first create; p99 over every call of a repetition`;
    if (!builtPlugin(EXAMPLE)) return notMeasured('the example plugin (plugins/example-proprietary/dist) is not built: run npm run build', method);
    const host = exampleHost(join(ws.dir, 'scale'), { healthIntervalMs: 5_000 });
    try {
      const hv = await host.hypervisor(EXAMPLE);
      log(`scale: warm-up with ${small} VMs`);
      await workload(hv, small, concurrency);
      const largeRuns: Workload[] = [];
      const smallSets: Workload[][] = [];
      for (let r = 0; r < reps; r++) {
        log(`scale: repetition ${r + 1}/${reps}: ${large} VMs`);
        largeRuns.push(await workload(hv, large, concurrency));
        log(`scale: repetition ${r + 1}/${reps}: ${smallRuns}× ${small} VMs`);
        const set: Workload[] = [];
        for (let i = 0; i < smallRuns; i++) set.push(await workload(hv, small, concurrency));
        smallSets.push(set);
      }
      const p99Large = largeRuns.map((w) => latencyQuantiles(allCalls(w)).p99 / 1000);
      const p99Small = smallSets.map((set) => latencyQuantiles(set.flatMap(allCalls)).p99 / 1000);
      const growth = (w: Workload): number => (w.heap.allRunning - w.heap.before) / MiB;
      const heapLarge = largeRuns.map(growth);
      const heapSmall = smallSets.map((set) => Math.max(...set.map(growth)));
      const perPhase = (ws_: Workload[]) =>
        Object.fromEntries(
          (['create', 'start', 'stop', 'delete'] as const).map((p) => [p, latencyQuantiles(ws_.flatMap((w) => w.latency[p]))]),
        );
      const left = host.store.list();
      return {
        method,
        rows: [
          compare(`heap growth, ${large} VMs`, measure(`${large} VMs`, 'MiB', heapLarge), measure(`${small} VMs`, 'MiB', heapSmall), {
            on: 'value',
            op: '<=',
            limit: 50,
            text: '≤ 50 MiB',
          }, { ratio: false }),
          compare(`per-call p99, ${large} vs ${small} VMs`, measure(`${large} VMs`, 'ms', p99Large), measure(`${small} VMs`, 'ms', p99Small), {
            on: 'ratio',
            op: '<=',
            limit: 3,
            text: `≤ 3× p99 at ${small}`,
          }),
        ],
        raw: {
          config: { ...cfg.scale, gcExposed: hasGc() },
          unit: { latency: 'µs', heap: 'bytes' },
          large: largeRuns.map((w) => ({ heap: w.heap, wallMs: w.wallMs, perPhase: perPhase([w]) })),
          small: smallSets.map((set) => ({ heap: set.map((w) => w.heap), wallMs: set.map((w) => w.wallMs), perPhase: perPhase(set) })),
          recordsLeft: (await left).records.length,
        },
      };
    } finally {
      await inPool([...live], concurrency, (vm) => vm.delete().catch(() => undefined));
      live.clear();
      await host.close();
    }
  },
};
