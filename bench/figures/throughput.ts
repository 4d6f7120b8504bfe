import { join } from 'node:path';
import { BareJsonRpc, NdjsonEcho, ShimPath } from '../clients.js';
import { alternate, pipelined } from '../drivers.js';
import type { Figure } from '../figure.js';
import { compare, measure } from '../report.js';

/** Figure 2: calls per second with many calls in flight. */
export const throughput: Figure = {
  id: 'throughput',
  title: '2 throughput',
  async run({ ws, cfg, log }) {
    const { warmup, total, window, reps } = cfg.throughput;
    const ndjson = new NdjsonEcho(ws.helper('ndjson-echo'));
    const bare = new BareJsonRpc(ws.helper('jsonrpc-echo'));
    const shim = await ShimPath.start(ws.executable('noop-plugin'), join(ws.dir, 'throughput'));
    try {
      log(`throughput: warm-up ${warmup} calls per path`);
      for (const c of [shim.call, ndjson.call, bare.call]) await pipelined(c, warmup, window);
      log(`throughput: ${reps} repetitions × ${total} calls, ${window} in flight`);
      const runs = await alternate(reps, {
        shim: () => pipelined(shim.call, total, window),
        ndjson: () => pipelined(ndjson.call, total, window),
        bare: () => pipelined(bare.call, total, window),
      });
      const shimM = measure('shim', 'calls/s', runs.shim);
      const ndjsonM = measure('raw NDJSON', 'calls/s', runs.ndjson);
      const bareM = measure('vscode-jsonrpc', 'calls/s', runs.bare);
      return {
        method:
          `${total} ShimVm.check() calls with ${window} in flight (a new call leaves as each answer arrives), through PluginHost to the ` +
          `no-op SDK plugin; vs a raw newline-delimited JSON-RPC echo (JSON.stringify/parse, one write per message) and bare ` +
          `vscode-jsonrpc, same window; ${reps} reps after ${warmup} warm-up calls`,
        rows: [
          compare('shim vs raw NDJSON', shimM, ndjsonM, { on: 'ratio', op: '>=', limit: 0.6, text: '≥ 0.6× raw NDJSON' }),
          compare('vscode-jsonrpc vs raw NDJSON', bareM, ndjsonM),
          compare('shim vs vscode-jsonrpc', shimM, bareM),
        ],
        raw: { config: cfg.throughput, unit: 'calls/s', perRep: runs },
      };
    } finally {
      await Promise.all([ndjson.close(), bare.close(), shim.close()]);
    }
  },
};
