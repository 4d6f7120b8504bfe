import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FrameWriter } from 'hvplug/transport';
import { CancelledError, ProtocolError, TimeoutError } from 'hvplug';
import { HostRpc } from '../../src/core/host-rpc.js';

/** HostRpc alone, fed what a plugin could send: it settles calls and reports, and never throws. */
function rpc(): { rpc: HostRpc; fatal: ProtocolError[] } {
  const fatal: ProtocolError[] = [];
  const out = new PassThrough();
  out.resume();
  const r = new HostRpc(new FrameWriter(out), { notification: () => undefined, fatal: (e) => fatal.push(e), note: () => undefined });
  return { rpc: r, fatal };
}

const deep = (n: number): unknown => JSON.parse(`${'['.repeat(n)}${']'.repeat(n)}`);

describe('HostRpc and deep input', () => {
  it('a non-message nested 100,000 deep is a fatal ProtocolError, not a throw', () => {
    const { rpc: r, fatal } = rpc();
    expect(() => r.receive(deep(100_000))).not.toThrow();
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toBeInstanceOf(ProtocolError);
  });

  it('an answer whose error is nested 100,000 deep fails that call with a ProtocolError', async () => {
    const { rpc: r } = rpc();
    const call = r.call('vm/info', {}, { timeoutMs: 1_000 });
    expect(() => r.receive({ jsonrpc: '2.0', id: 1, error: deep(100_000) })).not.toThrow();
    await expect(call).rejects.toBeInstanceOf(ProtocolError);
    expect(r.outstanding).toBe(0);
  });
});

/** HostRpc over a writer that keeps what is sent, as parsed messages. */
function recording(answer?: (msg: { id?: number; method?: string }, r: HostRpc) => void): { rpc: HostRpc; sent: { id?: number; method?: string; params?: unknown }[] } {
  const sent: { id?: number; method?: string; params?: unknown }[] = [];
  const peer = { notification: () => undefined, fatal: () => undefined, note: () => undefined };
  const r: HostRpc = new HostRpc(
    {
      write: (msg: object) => {
        sent.push(msg);
        answer?.(msg, r);
      },
    },
    peer,
  );
  return { rpc: r, sent };
}

describe('HostRpc: how a call ends', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('answered: resolves, and keeps neither the call nor its deadline', async () => {
    const { rpc: r } = recording();
    const call = r.call('vm/check', { vmId: 'a' }, { timeoutMs: 1_000 });
    expect([r.outstanding, r.withDeadline]).toEqual([1, 1]);
    r.receive({ jsonrpc: '2.0', id: 1, result: { ok: true } });
    await expect(call).resolves.toEqual({ ok: true });
    expect([r.outstanding, r.withDeadline]).toEqual([0, 0]);
  });

  it('answered within the send (a writer that answers at once): resolves, and keeps nothing', async () => {
    const { rpc: r } = recording((msg, rr) => {
      if (msg.id !== undefined) rr.receive({ jsonrpc: '2.0', id: msg.id, result: 'at once' });
    });
    const signal = new AbortController().signal;
    await expect(r.call('vm/check', {}, { timeoutMs: 1_000, signal })).resolves.toBe('at once');
    expect([r.outstanding, r.withDeadline]).toEqual([0, 0]);
  });

  it('not sent (the writer throws): fails with a ProtocolError, and keeps nothing', async () => {
    const r = new HostRpc(
      {
        write: () => {
          throw new Error('the stream is closed');
        },
      },
      { notification: () => undefined, fatal: () => undefined, note: () => undefined },
    );
    await expect(r.call('vm/check', {}, { timeoutMs: 1_000 })).rejects.toThrow(/the request was not sent: the stream is closed/);
    expect([r.outstanding, r.withDeadline]).toEqual([0, 0]);
  });

  it('aborted after it was sent: fails with CancelledError, tells the plugin, and keeps nothing', async () => {
    const { rpc: r, sent } = recording();
    const ac = new AbortController();
    const call = r.call('vm/check', {}, { timeoutMs: 1_000, signal: ac.signal });
    ac.abort();
    await expect(call).rejects.toBeInstanceOf(CancelledError);
    expect(sent.map((m) => m.method)).toEqual(['vm/check', '$/cancelRequest']);
    expect([r.outstanding, r.withDeadline]).toEqual([0, 0]);
  });

  it('past its deadline: fails with TimeoutError, tells the plugin, and keeps nothing', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'hrtime'] });
    const { rpc: r, sent } = recording();
    const call = r.call('vm/check', {}, { timeoutMs: 1_000 });
    const failed = expect(call).rejects.toBeInstanceOf(TimeoutError);
    vi.advanceTimersByTime(1_001);
    await failed;
    expect(sent.map((m) => m.method)).toEqual(['vm/check', '$/cancelRequest']);
    expect([r.outstanding, r.withDeadline]).toEqual([0, 0]);
  });

  it('several at once, answered out of order: each settles once, by its own answer', async () => {
    const { rpc: r } = recording();
    const a = r.call('vm/check', {}, { timeoutMs: 1_000 });
    const b = r.call('vm/check', {}, { timeoutMs: 1_000 });
    r.receive({ jsonrpc: '2.0', id: 2, result: 'b' });
    r.receive({ jsonrpc: '2.0', id: 1, result: 'a' });
    // The first call's place is free again while the third is outstanding.
    const c = r.call('vm/check', {}, { timeoutMs: 1_000 });
    const d = r.call('vm/check', {}, { timeoutMs: 1_000 });
    expect([r.outstanding, r.withDeadline]).toEqual([2, 2]);
    r.receive({ jsonrpc: '2.0', id: 4, result: 'd' });
    r.receive({ jsonrpc: '2.0', id: 3, result: 'c' });
    r.receive({ jsonrpc: '2.0', id: 3, result: 'again' });
    await expect(Promise.all([a, b, c, d])).resolves.toEqual(['a', 'b', 'c', 'd']);
    expect([r.outstanding, r.withDeadline]).toEqual([0, 0]);
  });

  it('failAll fails the calls outstanding in the order they were made, and every later one', async () => {
    const { rpc: r } = recording();
    const first = r.call('vm/check', {}, { timeoutMs: 1_000 });
    const second = r.call('vm/check', {}, { timeoutMs: 1_000 });
    r.receive({ jsonrpc: '2.0', id: 1, result: 'first' });
    await first;
    // Made while the second is outstanding: the third where the first was, the fourth beside them.
    const third = r.call('vm/check', {}, { timeoutMs: 1_000 });
    const fourth = r.call('vm/check', {}, { timeoutMs: 1_000 });
    const order: number[] = [];
    const settled = Promise.all([second, third, fourth].map((call, i) => call.catch(() => order.push(i + 2))));
    r.failAll(new ProtocolError('gone'));
    await settled;
    expect(order).toEqual([2, 3, 4]);
    await expect(r.call('vm/check', {}, { timeoutMs: 1_000 })).rejects.toThrow('gone');
    expect([r.outstanding, r.withDeadline]).toEqual([0, 0]);
  });

  it('deadlines of several calls and timeouts: each expires at its own, the others still answered', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'hrtime'] });
    const { rpc: r } = recording();
    const slow = r.call('vm/check', {}, { timeoutMs: 300 });
    const answered = r.call('vm/check', {}, { timeoutMs: 300 });
    const fast = r.call('vm/check', {}, { timeoutMs: 100 });
    const later = r.call('vm/check', {}, { timeoutMs: 300 });
    const fastFailed = expect(fast).rejects.toBeInstanceOf(TimeoutError);
    const slowFailed = expect(slow).rejects.toBeInstanceOf(TimeoutError);
    r.receive({ jsonrpc: '2.0', id: 2, result: 'in time' });
    vi.advanceTimersByTime(101);
    await fastFailed;
    expect([r.outstanding, r.withDeadline]).toEqual([2, 2]);
    r.receive({ jsonrpc: '2.0', id: 4, result: 'in time too' });
    vi.advanceTimersByTime(200);
    await slowFailed;
    await expect(Promise.all([answered, later])).resolves.toEqual(['in time', 'in time too']);
    expect([r.outstanding, r.withDeadline]).toEqual([0, 0]);
  });
});

/**
 * What HostRpc makes of one message, with call 1 outstanding: every report, every frame it sends, and how the call
 * stands after.
 */
async function outcome(input: unknown): Promise<string[]> {
  const seen: string[] = [];
  const out = new PassThrough();
  out.on('data', (c: Buffer) => seen.push(`sent ${c.toString().replace(/^Content-Length: \d+\r\n\r\n/, '')}`));
  const r = new HostRpc(new FrameWriter(out), {
    notification: (method, params) => seen.push(`notification ${method} ${JSON.stringify(params)}`),
    fatal: (e) => seen.push(`fatal ${e.name}: ${e.message}`),
    note: (message, fields) => seen.push(`note ${message} ${JSON.stringify(fields)}`),
  });
  let settled = 'pending';
  r.call('vm/info', {}, { timeoutMs: null }).then(
    (v) => (settled = `resolved ${JSON.stringify(v)}`),
    (e: Error) => (settled = `rejected ${e.name}: ${e.message}`),
  );
  out.read();
  seen.length = 0;
  r.receive(input);
  await new Promise((resolve) => setImmediate(resolve));
  return [...seen, settled];
}

const inherited = (proto: object, own: object): object => Object.assign(Object.create(proto) as object, own);

/** Messages of every shape, each with what the host makes of it: the envelope check is exact, not approximate. */
const ENVELOPES: [string, unknown, string[]][] = [
  ['null', null, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: null', 'pending']],
  ['a number', 1, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: 1', 'pending']],
  ['a string', 'x', ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: "x"', 'pending']],
  ['true', true, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: true', 'pending']],
  ['an empty array', [], ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: []', 'pending']],
  ['an array of an answer', [{ jsonrpc: '2.0', id: 1, result: 1 }], ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: [{"jsonrpc":"2.0","id":1,"result":1}]', 'pending']],
  ['an empty object', {}, ['fatal ProtocolError: plugin sent a message with neither method nor id: {}', 'pending']],
  ['only jsonrpc', { jsonrpc: '2.0' }, ['fatal ProtocolError: plugin sent a message with neither method nor id: {"jsonrpc":"2.0"}', 'pending']],
  ['an answer', { jsonrpc: '2.0', id: 1, result: { ok: true } }, ['resolved {"ok":true}']],
  ['an answer without jsonrpc', { id: 1, result: null }, ['resolved null']],
  ['an answer with other keys', { jsonrpc: '2.0', id: 1, result: 2, extra: 'x', params: [1] }, ['resolved 2']],
  ['an answer to a string id', { jsonrpc: '2.0', id: '1', result: 1 }, ['note answer to an id the host never sent {"id":"\\"1\\""}', 'pending']],
  ['an answer to a null id', { jsonrpc: '2.0', id: null, result: 1 }, ['note answer to an id the host never sent {"id":"null"}', 'pending']],
  ['an answer to a fractional id', { jsonrpc: '2.0', id: 1.5, result: 1 }, ['note answer to an id the host never sent {"id":"1.5"}', 'pending']],
  ['an answer to a negative id', { jsonrpc: '2.0', id: -1, result: 1 }, ['note answer to an id the host never sent {"id":"-1"}', 'pending']],
  ['an answer to an id never sent', { jsonrpc: '2.0', id: 2, result: 1 }, ['note answer to an id the host never sent {"id":"2"}', 'pending']],
  ['an answer to id 0', { jsonrpc: '2.0', id: 0, result: 1 }, ['note answer to an id the host never sent {"id":"0"}', 'pending']],
  ['an id of true', { jsonrpc: '2.0', id: true, result: 1 }, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: {"jsonrpc":"2.0","id":true,"result":1}', 'pending']],
  ['an id of an object', { jsonrpc: '2.0', id: { n: 1 }, result: 1 }, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: {"jsonrpc":"2.0","id":{"n":1},"result":1}', 'pending']],
  ['an id of an array', { jsonrpc: '2.0', id: [1], result: 1 }, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: {"jsonrpc":"2.0","id":[1],"result":1}', 'pending']],
  ['an id of NaN', { jsonrpc: '2.0', id: NaN, result: 1 }, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: {"jsonrpc":"2.0","id":null,"result":1}', 'pending']],
  ['an id of Infinity', { jsonrpc: '2.0', id: Infinity, result: 1 }, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: {"jsonrpc":"2.0","id":null,"result":1}', 'pending']],
  ['an id of -Infinity', { jsonrpc: '2.0', id: -Infinity, result: 1 }, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: {"jsonrpc":"2.0","id":null,"result":1}', 'pending']],
  ['an id of a bigint', { jsonrpc: '2.0', id: 1n, result: 1 }, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: a object too deep to print', 'pending']],
  ['an id explicitly undefined', { jsonrpc: '2.0', id: undefined, result: 1 }, ['fatal ProtocolError: plugin sent a message with neither method nor id: {"jsonrpc":"2.0","result":1}', 'pending']],
  ['neither result nor error', { jsonrpc: '2.0', id: 1 }, ['rejected ProtocolError: plugin answered vm/info with neither a result nor an error']],
  ['both result and error', { jsonrpc: '2.0', id: 1, result: 1, error: { code: 1, message: 'x' } }, ['rejected ProtocolError: plugin answered vm/info with both a result and an error']],
  ['a result explicitly undefined', { jsonrpc: '2.0', id: 1, result: undefined }, ['resolved undefined']],
  ['an error explicitly undefined', { jsonrpc: '2.0', id: 1, error: undefined }, ['rejected ProtocolError: plugin answered vm/info with a malformed error: undefined']],
  ['a null result', { jsonrpc: '2.0', id: 1, result: null }, ['resolved null']],
  ['an error', { jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'bad', data: { issues: [] } } }, ['rejected InvalidParamsError: vm/info: invalid params: (root): bad']],
  ['an error with a fractional code', { jsonrpc: '2.0', id: 1, error: { code: 1.5, message: 'x' } }, ['rejected ProtocolError: plugin answered vm/info with a malformed error: {"code":1.5,"message":"x"}']],
  ['an error that is a number', { jsonrpc: '2.0', id: 1, error: 5 }, ['rejected ProtocolError: plugin answered vm/info with a malformed error: 5']],
  ['an error that is null', { jsonrpc: '2.0', id: 1, error: null }, ['rejected ProtocolError: plugin answered vm/info with a malformed error: null']],
  ['an error without a message', { jsonrpc: '2.0', id: 1, error: { code: 1 } }, ['rejected ProtocolError: plugin answered vm/info with a malformed error: {"code":1}']],
  ['a notification', { jsonrpc: '2.0', method: 'vm/event', params: { vmId: 'v', seq: 1 } }, ['notification vm/event {"vmId":"v","seq":1}', 'pending']],
  ['a notification without params', { jsonrpc: '2.0', method: 'x' }, ['notification x undefined', 'pending']],
  ['a notification with an empty method', { jsonrpc: '2.0', method: '' }, ['notification  undefined', 'pending']],
  ['a notification that also answers', { jsonrpc: '2.0', method: 'x', result: 1 }, ['notification x undefined', 'pending']],
  ['a method explicitly undefined', { jsonrpc: '2.0', method: undefined, id: 1, result: 1 }, ['resolved 1']],
  ['a method that is a number', { jsonrpc: '2.0', method: 5, params: {} }, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: {"jsonrpc":"2.0","method":5,"params":{}}', 'pending']],
  ['a method that is null', { jsonrpc: '2.0', method: null, id: 1, result: 1 }, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: {"jsonrpc":"2.0","method":null,"id":1,"result":1}', 'pending']],
  ['a method that is an object', { jsonrpc: '2.0', method: {}, id: 1 }, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: {"jsonrpc":"2.0","method":{},"id":1}', 'pending']],
  ['a request', { jsonrpc: '2.0', id: 7, method: 'host/x', params: {} }, ['note plugin sent the host a request; the host serves none {"method":"host/x"}', 'sent {"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"the host serves no methods (host/x)"}}', 'pending']],
  ['a request with a null id', { jsonrpc: '2.0', id: null, method: 'host/x' }, ['note plugin sent the host a request; the host serves none {"method":"host/x"}', 'sent {"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"the host serves no methods (host/x)"}}', 'pending']],
  ['a request with a string id', { jsonrpc: '2.0', id: 'a', method: 'host/x' }, ['note plugin sent the host a request; the host serves none {"method":"host/x"}', 'sent {"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"the host serves no methods (host/x)"}}', 'pending']],
  ['a request with a bad id', { jsonrpc: '2.0', id: false, method: 'host/x' }, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: {"jsonrpc":"2.0","id":false,"method":"host/x"}', 'pending']],
  ['a request with id 1', { jsonrpc: '2.0', id: 1, method: 'vm/info', result: 1 }, ['note plugin sent the host a request; the host serves none {"method":"vm/info"}', 'sent {"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"the host serves no methods (vm/info)"}}', 'pending']],
  ['JSON with __proto__', JSON.parse('{"__proto__": {"result": 1}, "id": 1}'), ['rejected ProtocolError: plugin answered vm/info with neither a result nor an error']],
  ['JSON with __proto__ holding an id', JSON.parse('{"__proto__": {"id": 1}, "result": 1}'), ['fatal ProtocolError: plugin sent a message with neither method nor id: {"__proto__":{"id":1},"result":1}', 'pending']],
  ['a null-prototype answer', Object.assign(Object.create(null) as object, { id: 1, result: 3 }), ['resolved 3']],
  ['an inherited result', inherited({ result: 4 }, { id: 1 }), ['resolved 4']],
  ['an inherited id', inherited({ id: 1 }, { result: 4 }), ['resolved 4']],
  ['an inherited method', inherited({ method: 'm' }, { params: 1 }), ['notification m 1', 'pending']],
  ['a Date', new Date(0), ['fatal ProtocolError: plugin sent a message with neither method nor id: "1970-01-01T00:00:00.000Z"', 'pending']],
  ['a Map', new Map([['id', 1]]), ['fatal ProtocolError: plugin sent a message with neither method nor id: {}', 'pending']],
  ['a function', () => undefined, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: function', 'pending']],
  ['a symbol', Symbol('x'), ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: symbol', 'pending']],
  ['undefined', undefined, ['fatal ProtocolError: plugin sent a message that is not a JSON-RPC object: undefined', 'pending']],
];

describe('HostRpc reads every envelope the same', () => {
  it.each(ENVELOPES)('%s', async (_name, input, expected) => {
    expect(await outcome(input)).toEqual(expected);
  });
});
