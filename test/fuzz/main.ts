// The long fuzz run (`npm run fuzz`): both sides, 100,000 cases each unless told otherwise, the seed printed so
// that a failure can be replayed with `npm run fuzz -- --seed <seed>`.
import { parseArgs } from 'node:util';
import { describeInput } from './frames.js';
import { hostNotes } from './host-side.js';
import { fuzzSide, surveySide, type Side } from './run.js';
import { CrashWatch } from './watch.js';

/** Heap growth over a whole side past which the run counts as leaking. */
const MAX_HEAP_GROWTH_MIB = 64;

function heapMiB(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  return process.memoryUsage().heapUsed / 2 ** 20;
}

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    runs: { type: 'string', default: '100000' },
    side: { type: 'string', default: 'both' },
    path: { type: 'string' },
    survey: { type: 'boolean', default: false },
  },
});
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
const runs = Number(values.runs);
if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(runs) || runs < 1) {
  console.error('usage: npm run fuzz -- [--seed <integer>] [--runs <count per side>] [--side host|sdk|both] [--path <fast-check path>] [--survey]');
  process.exit(2);
}
const sides: Side[] = values.side === 'both' ? ['host', 'sdk'] : [values.side as Side];
if (!sides.every((s) => s === 'host' || s === 'sdk')) {
  console.error(`--side must be host, sdk or both, not ${values.side}`);
  process.exit(2);
}
if (!(globalThis as { gc?: unknown }).gc) console.error('note: run with node --expose-gc for meaningful heap figures');

const watch = new CrashWatch().install();
let failed = false;
console.log(`fuzz: seed ${seed}, ${runs} runs per side`);
for (const side of sides) {
  const progress = (cases: number): void => {
    if (cases % 10_000 === 0) console.error(`${side}: ${cases} cases...`);
  };
  const before = heapMiB();
  let line: string;
  if (values.survey) {
    const s = await surveySide(side, watch, { seed, runs, progress });
    line = `${side}: surveyed ${s.cases} cases in ${(s.ms / 1000).toFixed(1)} s, seed ${seed}: ${s.problems.size} distinct problems`;
    for (const [key, p] of s.problems) {
      failed = true;
      console.log(`\n== ${side}: ${p.count}× ${key}\n${p.detail}\nsmallest input:\n${describeInput(p.example)}`);
    }
  } else {
    const r = await fuzzSide(side, watch, { seed, runs, path: values.path, progress });
    line = `${side}: ${r.cases} cases (${r.runs} runs) in ${(r.ms / 1000).toFixed(1)} s, seed ${seed}`;
    if (r.failure) {
      failed = true;
      console.log(r.failure);
      console.log(`replay: npm run fuzz -- --side ${side} --seed ${seed} --runs ${runs}`);
    }
  }
  if (side === 'host') {
    // Not failures: the real client catches these. Listed so that they get looked at.
    for (const [key, n] of hostNotes) console.log(`\nnote (host): ${n.count}× ${key}\nsmallest input:\n${describeInput(n.example)}`);
  }
  const after = heapMiB();
  console.log(`${line}; heap ${before.toFixed(1)} MiB -> ${after.toFixed(1)} MiB`);
  if (after - before > MAX_HEAP_GROWTH_MIB) {
    failed = true;
    console.log(`${side}: the heap grew by ${(after - before).toFixed(1)} MiB over the run (limit ${MAX_HEAP_GROWTH_MIB} MiB)`);
  }
}
watch.uninstall();
process.exit(failed ? 1 : 0);
