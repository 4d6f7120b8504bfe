import { expect, expectRejection, fail, type CheckDef } from '../check.js';

const ANSWER_WITHIN_MS = 2_000;

export const cancelCheck: CheckDef = {
  id: 'cancel.reaches-handler',
  title: 'a cancelled call reaches its handler, which answers at once; the plugin keeps serving',
  verifies: 'Deadlines and cancellation: on $/cancelRequest the handler stops (its AbortSignal fires) and the request is answered.',
  needs: ['vm/create', 'vm/start', 'vm/wait'],
  run: async (fx) => {
    const { wire } = fx.run;
    const vm = await fx.vmIn('running');
    const mark = wire.records.length;
    await expectRejection(vm.wait(undefined, fx.opts('vm/wait', 150)), 'Timeout', 'vm/wait of a running VM with a 150 ms deadline');
    const request = wire.find(
      (r) =>
        r.tag === fx.conn.tag &&
        r.direction === 'send' &&
        r.message.method === 'vm/wait' &&
        (r.message.params as { vmId?: unknown } | undefined)?.vmId === vm.id,
      mark,
    );
    if (!request) fail('suite error: the vm/wait request is not on the wire');
    const id = request.message.id;
    const cancel = wire.find((r) => r.tag === fx.conn.tag && r.message.method === '$/cancelRequest' && (r.message.params as { id?: unknown }).id === id, mark);
    if (!cancel) fail('host error: no $/cancelRequest was sent for the expired vm/wait');
    const answered = await wire.waitFor(
      (r) => r.tag === fx.conn.tag && r.direction === 'receive' && r.message.method === undefined && r.message.id === id,
      ANSWER_WITHIN_MS,
      mark,
    );
    if (!answered) {
      fail(`the plugin did not answer the cancelled vm/wait (request ${String(id)}) within ${ANSWER_WITHIN_MS} ms: its handler ignores $/cancelRequest`);
    }
    expect(!('result' in answered.message) || (answered.message.result as { status?: string }).status !== 'running', 'the cancelled vm/wait answered status running');
    await fx.raw('health/ping', {}, ANSWER_WITHIN_MS).catch((err: Error) => fail(`after the cancellation, health/ping failed: ${err.message}`));
    if (fx.advertised('vm/info')) {
      const info = await vm.info(undefined, fx.opts('vm/info'));
      expect(info.status === 'running', `after the cancelled vm/wait the VM is ${info.status}`);
    }
  },
};
