import { FrameDecoder } from 'hvplug/transport';
import { alternate, collect } from '../drivers.js';
import type { Figure } from '../figure.js';
import { compare, measure } from '../report.js';

const MiB = 1024 * 1024;
/** What one read from a pipe delivers on Linux. */
const PIPE_CHUNK = 64 * 1024;

/** A JSON-RPC answer framed to exactly `bytes` of body, cut into the chunks a pipe would deliver. */
function framedAnswer(bytes: number): Buffer[] {
  const shell = JSON.stringify({ jsonrpc: '2.0', id: 1, result: '' });
  const body = shell.replace('""', `"${'x'.repeat(bytes - shell.length)}"`);
  const frame = Buffer.from(`Content-Length: ${bytes}\r\n\r\n${body}`);
  const chunks: Buffer[] = [];
  for (let i = 0; i < frame.length; i += PIPE_CHUNK) chunks.push(frame.subarray(i, i + PIPE_CHUNK));
  return chunks;
}

/**
 * The least ms of `runs` runs of `work`, garbage collected before each (untimed). The least, because what
 * varies between runs only adds: above all whether the body's allocation gets pages already mapped or fresh
 * ones the kernel must fault in (16 MiB is 4096 faults), which otherwise decides the time more than the
 * decoder does and is not linear in the size (small bodies get reused memory more often).
 */
function timed(runs: number, work: () => void): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    collect();
    const t0 = performance.now();
    work();
    times.push(performance.now() - t0);
  }
  return Math.min(...times);
}

function decode(chunks: readonly Buffer[], bytes: number): void {
  const d = new FrameDecoder();
  const out: Buffer[] = [];
  for (const c of chunks) out.push(...d.push(c));
  if (out.length !== 1 || out[0]?.length !== bytes) throw new Error(`decoded ${out.length} bodies, not one of ${bytes} bytes`);
}

/** Figure 7: the host decoding one large message from a plugin, fed as a pipe delivers it. */
export const framing: Figure = {
  id: 'framing',
  title: '7 frame decoding',
  async run({ cfg, log }) {
    const { reps, runs } = cfg.framing;
    const sizes = { small: 4 * MiB, large: 16 * MiB, msg: 15 * MiB } as const;
    const chunks = { small: framedAnswer(sizes.small), large: framedAnswer(sizes.large), msg: framedAnswer(sizes.msg) };
    log(`framing: ${reps} repetitions × ${runs} decodes of 4, 15 and 16 MiB messages in ${PIPE_CHUNK / 1024} KiB chunks`);
    const perRep = await alternate(reps, {
      small: async () => timed(runs, () => decode(chunks.small, sizes.small)),
      large: async () => timed(runs, () => decode(chunks.large, sizes.large)),
      msg: async () => timed(runs, () => decode(chunks.msg, sizes.msg)),
      // The floor: the same bytes copied once into one buffer.
      copy: async () => timed(runs, () => void Buffer.concat(chunks.msg)),
    });
    const m = (label: string, k: keyof typeof perRep) => measure(label, 'ms', perRep[k]);
    return {
      method:
        `FrameDecoder.push fed one Content-Length frame in ${PIPE_CHUNK / 1024} KiB chunks, as a pipe delivers it (the host's ` +
        `stdout reader runs this per chunk); 16 MiB against 4 MiB shows whether the work is linear in the message; the 15 MiB ` +
        `message against one Buffer.concat of its chunks; ${reps} reps, each the fastest of ${runs} decodes with a gc() before each`,
      rows: [
        compare('16 MiB vs 4 MiB message', m('16 MiB', 'large'), m('4 MiB', 'small'), { on: 'ratio', op: '<=', limit: 4.5, text: '≤ 4.5× (linear)' }),
        compare('15 MiB message vs one copy', m('15 MiB', 'msg'), m('Buffer.concat', 'copy')),
      ],
      raw: { config: cfg.framing, unit: 'ms', chunkBytes: PIPE_CHUNK, perRep },
    };
  },
};
