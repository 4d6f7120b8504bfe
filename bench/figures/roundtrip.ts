import { join } from 'node:path';
import { BareJsonRpc, RawPipeEcho, ShimPath } from '../clients.js';
import { alternate, sequential } from '../drivers.js';
import type { Figure } from '../figure.js';
import { compare, measure } from '../report.js';
import { latencyQuantiles } from '../stats.js';

/** Figure 1: latency of one no-op call with nothing else in flight. */
export const roundtrip: Figure = {
  id: 'roundtrip',
  title: '1 round trip',
  async run({ ws, cfg, log }) {
    const { warmup, calls, reps } = cfg.roundtrip;
    const raw = new RawPipeEcho(ws.helper('raw-echo'));
    const bare = new BareJsonRpc(ws.helper('jsonrpc-echo'));
    const shim = await ShimPath.start(ws.executable('noop-plugin'), join(ws.dir, 'roundtrip'));
    try {
      log(`round trip: warm-up ${warmup} calls per path`);
      for (const c of [shim.call, shim.ping, raw.call, bare.call]) await sequential(c, warmup);
      log(`round trip: ${reps} repetitions × ${calls} sequential calls per path`);
      const runs = await alternate(reps, {
        shim: () => sequential(shim.call, calls).then(latencyQuantiles),
        shimPing: () => sequential(shim.ping, calls).then(latencyQuantiles),
        raw: () => sequential(raw.call, calls).then(latencyQuantiles),
        bare: () => sequential(bare.call, calls).then(latencyQuantiles),
      });
      const m = (label: string, k: keyof typeof runs, q: 'p50' | 'p99') => measure(label, 'µs', runs[k].map((r) => r[q]));
      const target = { on: 'ratio', op: '<=', limit: 1.5, text: '≤ 1.5× raw pipe' } as const;
      return {
        method:
          `ShimVm.check() (vm/check, VM-scoped, advertised) on a no-op SDK plugin bundled like a shipped one, through PluginHost; ` +
          `vs the same request bytes echoed by a raw pipe echo process, and vs bare vscode-jsonrpc (StreamMessageReader/Writer). ` +
          `${reps} reps × ${calls} sequential calls after ${warmup} warm-up calls; p50/p99 per rep`,
        rows: [
          compare('shim p50 vs raw pipe', m('shim', 'shim', 'p50'), m('raw pipe', 'raw', 'p50'), target),
          compare('shim p99 vs raw pipe', m('shim', 'shim', 'p99'), m('raw pipe', 'raw', 'p99')),
          compare('shim p50 vs vscode-jsonrpc', m('shim', 'shim', 'p50'), m('vscode-jsonrpc', 'bare', 'p50')),
          compare('vscode-jsonrpc p50 vs raw pipe', m('vscode-jsonrpc', 'bare', 'p50'), m('raw pipe', 'raw', 'p50')),
          compare('health/ping p50 vs raw pipe', m('shim ping', 'shimPing', 'p50'), m('raw pipe', 'raw', 'p50')),
        ],
        raw: { config: cfg.roundtrip, unit: 'µs', perRep: runs },
      };
    } finally {
      await Promise.all([raw.close(), bare.close(), shim.close()]);
    }
  },
};
