import { join } from 'node:path';
import { NOTIFICATION_RATE, PluginHost } from 'hvplug';
import { silentLogger } from '../clients.js';
import { collect } from '../drivers.js';
import type { Figure } from '../figure.js';
import { compare, measure } from '../report.js';

const MiB = 2 ** 20;
/** Just under the host's budget: the most a plugin may send without being cut off, sent for as long as it likes. */
const RATE = Math.floor(NOTIFICATION_RATE * 0.95);

/** Host heap (after gc) and RSS, in MiB, sampled once a second for `seconds` while one VM's plugin floods it. */
async function floodRun(dir: string, flooder: string, seconds: number): Promise<{ heap: number[]; rss: number[]; events: number }> {
  const host = new PluginHost({
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logger: silentLogger(),
    plugins: [{ name: 'flooder', command: flooder, env: { FLOOD_RATE: String(RATE) } }],
    supervision: { healthIntervalMs: 1_000 },
  });
  try {
    const hv = await host.hypervisor('flooder');
    const vm = await hv.createVm({ config: {} });
    let events = 0;
    vm.on('event', () => events++);
    await vm.start();
    const heap: number[] = [];
    const rss: number[] = [];
    for (let s = 0; s < seconds; s++) {
      await new Promise((r) => setTimeout(r, 1_000));
      collect();
      const m = process.memoryUsage();
      heap.push(m.heapUsed / MiB);
      rss.push(m.rss / MiB);
    }
    if ((await host.client('flooder'))?.failure) throw new Error('the flooder was cut off below the budget');
    return { heap, rss, events };
  } finally {
    await host.close();
  }
}

/** Figure 8: the host's memory while a plugin sends events at the budget's rate for seconds on end. */
export const eventFlood: Figure = {
  id: 'event-flood',
  title: '8 event flood',
  async run({ ws, cfg, log }) {
    const { reps, seconds } = cfg.eventFlood;
    log(`event-flood: ${reps} runs of ${seconds} s at ${RATE} events/s`);
    const early: { heap: number[]; rss: number[] } = { heap: [], rss: [] };
    const late: { heap: number[]; rss: number[] } = { heap: [], rss: [] };
    const counts: number[] = [];
    for (let r = 0; r < reps; r++) {
      const run = await floodRun(join(ws.dir, `flood-${r}`), ws.helper('event-flooder'), seconds);
      // The first second is warm-up (the plugin's start, the first record writes); from the second on it must be flat.
      early.heap.push(run.heap[1] as number);
      early.rss.push(run.rss[1] as number);
      late.heap.push(run.heap.at(-1) as number);
      late.rss.push(run.rss.at(-1) as number);
      counts.push(run.events);
    }
    return {
      method:
        `a plugin sends status-changing vm/events (paused, resumed) for one VM at ${RATE}/s, 95% of the host's budget of ` +
        `${NOTIFICATION_RATE}/s, for ${seconds} s; the host's heap (after gc) and RSS after ${seconds} s against after 2 s`,
      rows: [
        compare(`host heap after ${seconds} s vs 2 s`, measure(`${seconds} s`, 'MiB', late.heap), measure('2 s', 'MiB', early.heap), {
          on: 'ratio',
          op: '<=',
          limit: 1.25,
          text: '≤ 1.25× (flat)',
        }),
        compare(`host RSS after ${seconds} s vs 2 s`, measure(`${seconds} s`, 'MiB', late.rss), measure('2 s', 'MiB', early.rss), {
          on: 'ratio',
          op: '<=',
          limit: 1.25,
          text: '≤ 1.25× (flat)',
        }),
      ],
      raw: { config: cfg.eventFlood, rate: RATE, eventsSeen: counts },
    };
  },
};
