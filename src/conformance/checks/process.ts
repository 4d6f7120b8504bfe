import { HOST_VERSION, ProtocolError } from 'hvplug';
import { PROTOCOL_VERSIONS, type InitializeParams } from 'hvplug/protocol';
import { expect, fail, within, type CheckDef } from '../check.js';
import { UNLISTED_METHOD_MS } from '../deadlines.js';
import type { Fixture } from '../fixture.js';
import { isAlive } from '../processes.js';
import { RawPlugin } from '../raw-plugin.js';

const exitOnEof: CheckDef = {
  id: 'process.exit-on-eof',
  title: 'the plugin exits when its stdin ends, without shutdown or exit',
  verifies: 'Lifecycle of the plugin process: stdin EOF (the host died) ends the plugin, so no orphan outlives its host.',
  run: async (fx) => {
    const tag = fx.run.session.nextTag('eof');
    const plugin = RawPlugin.start(fx.run.session.spec, fx.run.wire.tracer(tag));
    fx.defer(`plugin process ${tag}`, async () => plugin.kill());
    const pid = plugin.pid;
    if (pid === undefined) fail('the plugin could not be started');
    fx.run.session.processes.note(pid);
    const params: InitializeParams = {
      protocolVersions: [...PROTOCOL_VERSIONS],
      host: { name: 'hvplug-conformance', version: HOST_VERSION },
      stateDir: fx.run.stateDir,
      runtimeDir: fx.run.runtimeDir,
      logLevel: 'info',
    };
    const answer = await plugin.request('initialize', params, fx.deadline('initialize') ?? UNLISTED_METHOD_MS);
    expect('result' in answer, `initialize failed: ${JSON.stringify(answer.error)}`);
    plugin.send({ method: 'initialized', params: {} });
    plugin.endInput();
    const deadline = fx.run.options.exitDeadlineMs;
    if (!(await within(deadline, () => !isAlive(pid), fx.signal))) {
      fail(`process ${pid} still runs ${deadline} ms after its stdin ended (it was killed)`);
    }
  },
};

const shutdown: CheckDef = {
  id: 'process.shutdown',
  title: 'the plugin answers shutdown and exits on exit, by itself',
  verifies: 'shutdown then exit end the session: the plugin needs no SIGTERM.',
  run: async (fx) => {
    const conn = await fx.run.session.connect('aux');
    const { signal, code } = await fx.run.session.disconnect(conn, fx.run.options.exitDeadlineMs);
    const request = fx.run.wire.find((r) => r.tag === conn.tag && r.direction === 'send' && r.message.method === 'shutdown');
    const answer = request && fx.run.wire.find((r) => r.tag === conn.tag && r.direction === 'receive' && r.message.id === request.message.id);
    expect(answer && 'result' in answer.message, `shutdown was not answered with a result${answer ? `: ${JSON.stringify(answer.message.error)}` : ''}`);
    expect(signal === null, `the plugin did not exit within ${fx.run.options.exitDeadlineMs} ms of shutdown and exit: it took ${signal}`);
    expect(code === 0, `the plugin exited with code ${code} after shutdown and exit`);
  },
};

/** A little of everything the plugin offers, so that a stray print has its chance even when run alone. */
async function exercise(fx: Fixture): Promise<void> {
  await fx.raw('health/ping', {});
  await fx.raw('rpc.discover', {});
  if (!fx.advertised('vm/create')) return;
  const vm = await fx.createVm();
  if (fx.advertised('vm/info')) await vm.info(undefined, fx.opts('vm/info'));
  if (!fx.advertised('vm/start')) return;
  await vm.start(undefined, fx.opts('vm/start'));
  if (fx.advertised('vm/stop')) await vm.stop({ graceMs: 2_000 }, fx.opts('vm/stop'));
}

const stdoutClean: CheckDef = {
  id: 'process.stdout-clean',
  title: 'nothing but protocol messages on the plugin\'s stdout, all run long',
  verifies: 'Framing: stdout carries Content-Length framed JSON-RPC only; logs go to stderr.',
  late: true,
  run: async (fx) => {
    await exercise(fx).catch(() => undefined);
    await within(200, () => !fx.conn.client.alive);
    const broken = fx.run.session.deaths.filter((d) => d.error instanceof ProtocolError);
    if (!broken.length) return;
    const lines = broken.map((d) => {
      const bytes = (d.error as ProtocolError).firstBytes;
      return `during ${d.check}: ${bytes ? `the plugin wrote ${bytes} on stdout` : d.error.message}`;
    });
    fail(lines.join('\n'));
  },
};

export function processChecks(): CheckDef[] {
  return [exitOnEof, shutdown];
}

export const stdoutCheck = stdoutClean;
