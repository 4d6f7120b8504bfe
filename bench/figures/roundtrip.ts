import { join } from 'node:path';
import { BareJsonRpc, NdjsonEcho, RawPipeEcho, ShimPath, type Call } from '../clients.js';
import { withCpuPerCall } from '../cpu.js';
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
    // The least any JSON-RPC does per call: JSON.parse and JSON.stringify on each side, no framing header, no validation.
    const ndjson = new NdjsonEcho(ws.helper('ndjson-echo'));
    const shim = await ShimPath.start(ws.executable('noop-plugin'), join(ws.dir, 'roundtrip'));
    try {
      log(`round trip: warm-up ${warmup} calls per path`);
      for (const c of [shim.call, shim.ping, raw.call, bare.call, ndjson.call]) await sequential(c, warmup);
      log(`round trip: ${reps} repetitions × ${calls} sequential calls per path`);
      // The shim's and the raw echo's runs also count the CPU each side spends per call: why the ratio is what it is.
      const cpu = { shim: [] as { ownUs: number; peerUs: number }[], raw: [] as { ownUs: number; peerUs: number }[] };
      const counted = async (k: keyof typeof cpu, pid: number, call: Call) => {
        const { value, ...perCall } = await withCpuPerCall(pid, calls, () => sequential(call, calls));
        cpu[k].push(perCall);
        return latencyQuantiles(value);
      };
      const runs = await alternate(reps, {
        shim: () => counted('shim', shim.pid, shim.call),
        shimPing: () => sequential(shim.ping, calls).then(latencyQuantiles),
        raw: () => counted('raw', raw.pid, raw.call),
        bare: () => sequential(bare.call, calls).then(latencyQuantiles),
        ndjson: () => sequential(ndjson.call, calls).then(latencyQuantiles),
      });
      const m = (label: string, k: keyof typeof runs, q: 'p50' | 'p99') => measure(label, 'µs', runs[k].map((r) => r[q]));
      const c = (label: string, k: keyof typeof cpu, side: 'ownUs' | 'peerUs') => measure(label, 'µs', cpu[k].map((r) => r[side]));
      const target = { on: 'ratio', op: '<=', limit: 1.5, text: '≤ 1.5× raw pipe' } as const;
      return {
        method:
          `ShimVm.check() (vm/check, VM-scoped, advertised) on a no-op SDK plugin bundled like a shipped one, through PluginHost; ` +
          `vs the same request bytes echoed by a raw pipe echo process, vs bare vscode-jsonrpc (StreamMessageReader/Writer), ` +
          `and vs a minimal JSON-RPC over newline-delimited JSON (JSON.parse and JSON.stringify on each side, nothing checked: the ` +
          `floor of any JSON-RPC here). ${reps} reps × ${calls} sequential calls after ${warmup} warm-up calls; p50/p99 per rep. CPU rows: µs per call of every ` +
          `thread of each process over the shim's and the raw echo's repetitions (the bench's own from process.cpuUsage, the peer's ` +
          `from /proc/<pid>/task/*/schedstat); the bench process is the host of the shim path and the raw echo's client`,
        rows: [
          compare('shim p50 vs raw pipe', m('shim', 'shim', 'p50'), m('raw pipe', 'raw', 'p50'), target),
          compare('shim p99 vs raw pipe', m('shim', 'shim', 'p99'), m('raw pipe', 'raw', 'p99')),
          compare('shim p50 vs vscode-jsonrpc', m('shim', 'shim', 'p50'), m('vscode-jsonrpc', 'bare', 'p50')),
          compare('vscode-jsonrpc p50 vs raw pipe', m('vscode-jsonrpc', 'bare', 'p50'), m('raw pipe', 'raw', 'p50')),
          compare('minimal JSON-RPC (NDJSON) p50 vs raw pipe', m('raw NDJSON', 'ndjson', 'p50'), m('raw pipe', 'raw', 'p50')),
          compare('shim p50 vs minimal JSON-RPC (NDJSON)', m('shim', 'shim', 'p50'), m('raw NDJSON', 'ndjson', 'p50')),
          compare('health/ping p50 vs raw pipe', m('shim ping', 'shimPing', 'p50'), m('raw pipe', 'raw', 'p50')),
          compare('CPU per call, host (the bench process) vs raw pipe client', c('host', 'shim', 'ownUs'), c('raw client', 'raw', 'ownUs')),
          compare('CPU per call, plugin vs raw pipe echo', c('plugin', 'shim', 'peerUs'), c('echo', 'raw', 'peerUs')),
        ],
        raw: { config: cfg.roundtrip, unit: 'µs', perRep: runs, cpuUsPerCall: cpu },
      };
    } finally {
      await Promise.all([raw.close(), bare.close(), ndjson.close(), shim.close()]);
    }
  },
};
