// The SDK's dispatcher, in-process: servePlugin over two PassThroughs (its documented test hook), the fuzzer
// writing into its stdin as a host would, then a plain health/ping to see whether it still answers.
import { PassThrough } from 'node:stream';
import { PROTOCOL_VERSIONS, type Json } from 'hvplug/protocol';
import { encodeFrame, FrameDecoder } from 'hvplug/transport';
import { servePlugin, type PluginDefinition } from 'hvplug/plugin-sdk';
import { chunked, FUZZ_MAX_MESSAGE_BYTES, verdict, type FuzzInput } from './frames.js';
import { describe, turns, within, type CrashWatch } from './watch.js';

const PROBE_ID = 'fuzz-probe';

const frame = (msg: Record<string, unknown>): Buffer => encodeFrame(JSON.stringify({ jsonrpc: '2.0', ...msg }));

const INITIALIZE = frame({
  id: 'fuzz-init',
  method: 'initialize',
  params: { protocolVersions: [...PROTOCOL_VERSIONS], host: { name: 'fuzz', version: '0' }, stateDir: '/nonexistent/state', runtimeDir: '/nonexistent/run', logLevel: 'silent' },
});
const PROBE = frame({ id: PROBE_ID, method: 'health/ping', params: {} });

export interface SdkCaseReport {
  /** The ping after the fuzzed bytes was answered. */
  answered: boolean;
  /** The plugin ended its session (servePlugin's `closed`) before its stdin ended. */
  closedBeforeEof: boolean;
  /** ... or at the latest once its stdin ended. */
  closed: boolean;
  crashes: string[];
  /** The output could not be read back as frames. */
  badOutput: string | undefined;
}

/** A plugin with handlers that answer at once, an extension that echoes what it is given, events and progress. */
function definition(): PluginDefinition {
  return {
    info: { name: 'fuzz-sdk', version: '1.0.0', vendor: 'hvplug fuzz' },
    capabilities: {},
    handlers: {
      'vm/create': () => ({ status: 'created', state: { n: 1 } }),
      'vm/start': ({ vmId }, ctx) => {
        ctx.progress('booting', 50);
        ctx.session.emit({ vmId, type: 'running' });
        return { status: 'running' };
      },
      'vm/check': () => ({ ok: true, detail: 'fine' }),
      'vm/delete': () => ({}),
    },
    extensions: { 'x-fuzz/echo': { handler: (params) => params as Json } },
  };
}

export async function runSdkCase(input: FuzzInput, watch: CrashWatch): Promise<SdkCaseReport> {
  const mark = watch.crashes.length;
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const decoder = new FrameDecoder();
  let answered = false;
  let initialized = false;
  let badOutput: string | undefined;
  stdout.on('data', (chunk: Buffer) => {
    if (badOutput) return;
    try {
      for (const body of decoder.push(chunk)) {
        const msg = JSON.parse(body.toString('utf8')) as { id?: unknown };
        if (msg.id === PROBE_ID) answered = true;
        if (msg.id === 'fuzz-init') initialized = true;
      }
    } catch (err) {
      badOutput = describe(err);
    }
  });
  let closed = false;
  const served = servePlugin(definition(), { input: stdin, output: stdout, exitProcess: false });
  void served.closed.then(() => (closed = true));

  stdin.write(INITIALIZE);
  await within(1_000, () => initialized || closed);
  for (const chunk of [...chunked(input), PROBE]) {
    try {
      stdin.write(chunk);
    } catch (err) {
      watch.crashes.push(`thrown while reading: ${describe(err)}`);
    }
  }
  await turns(input.pieces.length * 4 + 50, () => answered || closed);
  // The SDK holds an answer up to 1 ms to join it with others. A message still incomplete then waits for bytes
  // that will never come: EOF (the host went away), on which a plugin ends its session.
  if (!answered && !closed) await within(20, () => answered || closed);
  const closedBeforeEof = closed;
  stdin.end();
  // A case that already crashed the reader has its answer: waiting for the session to end would only wait.
  await within(500, () => closed || watch.crashes.length > mark);
  served.close();
  stdout.destroy();
  return { answered, closedBeforeEof, closed, crashes: watch.since(mark), badOutput };
}

export function sdkCaseProblem(input: FuzzInput, r: SdkCaseReport): string | undefined {
  if (r.crashes.length) return r.crashes.join('\n');
  if (r.badOutput) return `the plugin wrote something that is not a frame: ${r.badOutput}`;
  if (!r.closed) return 'the plugin did not end its session on stdin EOF';
  const v = verdict(input.pieces, true);
  if (v === 'ok' && !r.answered) return 'after well-framed messages the plugin did not answer a health/ping';
  if (v === 'violation' && !r.closedBeforeEof) return 'the stream broke the framing, but the plugin went on reading it';
  if (v === 'violation' && r.answered) return 'the plugin answered a request that came after a framing violation';
  if (v === 'exit' && !r.closedBeforeEof) return 'the plugin did not end its session on `exit`';
  return undefined;
}

/** The SDK reads its cap from the environment when it starts serving; the fuzz cap is small (see frames.ts). */
export function useFuzzCap(): void {
  process.env.HVPLUG_MAX_MESSAGE_BYTES = String(FUZZ_MAX_MESSAGE_BYTES);
}
