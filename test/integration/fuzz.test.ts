// Property-based fuzzing of both ends of the wire, quick configuration (`npm run fuzz` is the long one): frames
// mutated in every way frames.ts knows, thrown (a) at the host's reader and shim as if from a plugin, in-process
// and through a real PluginClient over a real child, and (b) at the SDK's dispatcher as if from a host. No
// uncaught exception, every call settled with a typed error or a value, a framing violation ends the stream.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HvplugError, PluginClient, PluginSpec, ProtocolError } from 'hvplug';
import { alive, fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';
import { describeInput, FUZZ_MAX_MESSAGE_BYTES, fuzzInput, joined, verdict, type FuzzInput } from '../fuzz/frames.js';
import { fuzzSide, type Side } from '../fuzz/run.js';
import { CrashWatch, describe as describeError } from '../fuzz/watch.js';

/** Fixed, so that a failure here replays (`npm run fuzz -- --seed <seed>`); FUZZ_SEED picks another. */
const SEED = Number(process.env.FUZZ_SEED ?? 20_251_212);
const QUICK_RUNS = 300;
/** A case costs a plugin process (~0.2-0.4 s to start here): few of them, to stay within the quick run's time. */
const REAL_RUNS = 30;

const watch = new CrashWatch();
beforeAll(() => void watch.install());
afterAll(async () => {
  watch.uninstall();
  await removeTempDirs();
});

async function quick(side: Side): Promise<void> {
  const r = await fuzzSide(side, watch, { seed: SEED, runs: QUICK_RUNS, timeLimitMs: 15_000 });
  console.log(`fuzz ${side}: ${r.cases} cases in ${(r.ms / 1000).toFixed(1)} s, seed ${SEED}`);
  expect(r.failure).toBeUndefined();
}

describe('fuzz: bytes from a plugin, read by the host', () => {
  it(`in-process (FrameReader → HostRpc → ShimHypervisor): ${QUICK_RUNS} cases`, () => quick('host'), 60_000);

  it(`a real PluginClient over a real plugin process writing the bytes: ${REAL_RUNS} cases`, async () => {
    const dir = await tempDir();
    const spec = PluginSpec.parse({ name: 'replay', command: fixture('replay') });
    let problem: string | undefined;
    await fc.assert(
      // Ids (HostRpc numbers calls from 1): initialize is 1, the x-replay/write call waiting for the bytes is 2.
      fc.asyncProperty(fuzzInput([2], 4), async (input: FuzzInput) => {
        const mark = watch.crashes.length;
        const client = await PluginClient.start(spec, {
          stateDir: dir,
          runtimeDir: dir,
          logger: memoryLogger().logger,
          logLevel: 'warn',
          hostVersion: '0',
          maxMessageBytes: FUZZ_MAX_MESSAGE_BYTES,
        });
        const path = join(dir, 'bytes');
        await writeFile(path, joined(input));
        const outcome = await client.call('x-replay/write', { path }, { timeoutMs: 100 }).then(
          () => 'resolved' as const,
          (err: unknown) => err,
        );
        await client.close({ graceMs: 300 });
        // After close: bytes that arrive after the call timed out still break the stream before close's own
        // shutdown answer can come back.
        const fatal = client.failure;
        const crashes = watch.since(mark);
        // The host ends the stream on a body that is not JSON-RPC, as on broken framing.
        const v = verdict(input.pieces, false, true);
        problem = crashes.length
          ? crashes.join('\n')
          : outcome !== 'resolved' && !(outcome instanceof HvplugError)
            ? `the call rejected with an untyped error: ${describeError(outcome)}`
            : alive(client.pid)
              ? `plugin ${client.pid} still alive after close`
              : v === 'violation' && !(fatal instanceof ProtocolError)
                ? `the stream broke the framing or sent a body that is not JSON-RPC, but the client did not fail with a ProtocolError (failure: ${fatal?.message ?? 'none'})`
                : v === 'ok' && fatal instanceof ProtocolError
                  ? `a well-framed stream was reported as broken: ${fatal.message}`
                  : undefined;
        if (problem) throw new Error(`${problem}\ninput:\n${describeInput(input)}`);
      }),
      { seed: SEED, numRuns: REAL_RUNS, interruptAfterTimeLimit: 15_000 },
    );
    expect(problem).toBeUndefined();
  }, 120_000);
});

describe('fuzz: bytes from a host, read by the plugin SDK', () => {
  it(`in-process (servePlugin over pipes): ${QUICK_RUNS} cases`, () => quick('sdk'), 60_000);
});
