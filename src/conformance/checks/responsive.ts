import { DEFAULT_SUPERVISION, HOST_VERSION } from 'hvplug';
import { ErrorCode, PROTOCOL_VERSIONS, type InitializeParams } from 'hvplug/protocol';
import { describeError, expect, fail, sleep, type CheckDef } from '../check.js';
import { UNLISTED_METHOD_MS } from '../deadlines.js';
import { RawPlugin } from '../raw-plugin.js';

/** What the host's health check allows a ping before it declares the plugin unhealthy and restarts it. */
const PING_DEADLINE_MS = DEFAULT_SUPERVISION.healthTimeoutMs;

/** A graceful stop may wait on the guest for long: the plugin must keep serving meanwhile, or the host kills it. */
const pingDuringStop: CheckDef = {
  id: 'health.ping-during-stop',
  title: `health/ping is answered within ${PING_DEADLINE_MS} ms while a graceful vm/stop runs`,
  verifies: 'A plugin keeps answering while a long call runs: the host pings it and restarts a plugin that does not answer.',
  needs: ['vm/create', 'vm/start', 'vm/stop'],
  run: async (fx) => {
    const vm = await fx.vmIn('running');
    const stopping = vm.stop({ graceMs: 5_000 }, fx.opts('vm/stop'));
    stopping.catch(() => undefined);
    // Sent once the stop has reached the plugin, so that the ping queues behind it if the plugin blocks.
    await sleep(50, fx.signal);
    const sent = Date.now();
    try {
      await fx.raw('health/ping', {}, PING_DEADLINE_MS);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'Timeout') {
        fail(`health/ping was not answered within ${PING_DEADLINE_MS} ms while vm/stop ran: the plugin blocks while it stops a VM (the host's health check would restart it)`);
      }
      fail(`health/ping failed while vm/stop ran: ${describeError(err)}`);
    }
    const tookMs = Date.now() - sent;
    await stopping.catch((err: unknown) => fail(`vm/stop failed after the ping (${tookMs} ms): ${describeError(err)}`));
  },
};

/** Methods a plugin answers before initialize: the session's own. Everything else waits for the handshake. */
const PROBE = 'vm/info';

const beforeInitialize: CheckDef = {
  id: 'handshake.before-initialize',
  title: `a request before initialize (${PROBE}) is answered with InvalidRequest, and the handshake still works`,
  verifies: 'Before initialize a plugin answers every request but initialize, shutdown, health/ping and rpc.discover with InvalidRequest (-32600), and stays ready for initialize.',
  run: async (fx) => {
    const tag = fx.run.session.nextTag('early');
    const plugin = RawPlugin.start(fx.run.session.spec, fx.run.wire.tracer(tag));
    fx.defer(`plugin process ${tag}`, async () => plugin.kill());
    if (plugin.pid === undefined) fail('the plugin could not be started');
    fx.run.session.processes.note(plugin.pid);
    const deadline = fx.deadline(PROBE) ?? UNLISTED_METHOD_MS;
    const early = await plugin.request(PROBE, { vmId: fx.newVmId() }, deadline).catch((err: Error) => fail(`${PROBE} before initialize: ${err.message}`));
    const error = early.error as { code?: unknown; message?: unknown } | undefined;
    if (!error) fail(`${PROBE} before initialize was answered with a result ${JSON.stringify(early.result)}, expected an InvalidRequest (-32600) error`);
    expect(error.code === ErrorCode.InvalidRequest, `${PROBE} before initialize failed with code ${String(error.code)} (${String(error.message)}), expected InvalidRequest (-32600)`);
    const params: InitializeParams = {
      protocolVersions: [...PROTOCOL_VERSIONS],
      host: { name: 'hvplug-conformance', version: HOST_VERSION },
      stateDir: fx.run.stateDir,
      runtimeDir: fx.run.runtimeDir,
      logLevel: 'info',
    };
    const answer = await plugin.request('initialize', params, fx.deadline('initialize') ?? UNLISTED_METHOD_MS);
    expect('result' in answer, `after a refused early request, initialize failed: ${JSON.stringify(answer.error)}`);
  },
};

export function responsivenessChecks(): CheckDef[] {
  return [pingDuringStop];
}

export const beforeInitializeCheck = beforeInitialize;
