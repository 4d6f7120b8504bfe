import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, PROTOCOL_VERSIONS } from 'hvplug/protocol';
import { encodeFrame, FrameDecoder, MAX_MESSAGE_VALUES } from 'hvplug/transport';
import { servePlugin, stderrLogger, type ExtensionHandler, type ServedPlugin } from 'hvplug/plugin-sdk';
import { RpcEndpoint, RpcError, type RequestHandler } from '../../src/plugin-sdk/rpc.js';
import { untilTurns } from '../helpers.js';

const VM = '6f1c8a52-3d4e-4b7a-9c2d-0e5f6a7b8c9d';

interface Wire {
  id?: number | string;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
};

const frame = (msg: Record<string, unknown>): Buffer => encodeFrame(JSON.stringify({ jsonrpc: '2.0', ...msg }));

/** Reads what a plugin writes: every write, and the messages in them. */
class Output {
  readonly stream = new PassThrough();
  readonly writes: Buffer[] = [];
  readonly messages: Wire[] = [];
  private readonly decoder = new FrameDecoder();

  constructor() {
    this.stream.on('data', (chunk: Buffer) => {
      this.writes.push(chunk);
      for (const body of this.decoder.push(chunk)) this.messages.push(JSON.parse(body.toString('utf8')) as Wire);
    });
  }

  answer(id: number | string): Wire | undefined {
    return this.messages.find((m) => m.id === id && m.method === undefined);
  }

  async answered(id: number | string): Promise<Wire> {
    await untilTurns(() => this.answer(id) !== undefined, `answer ${id}`);
    return this.answer(id) as Wire;
  }
}

/** A plugin served in-process, its log lines kept; its extensions are the test's. */
class Plugin {
  readonly input = new PassThrough();
  readonly out = new Output();
  readonly log: Record<string, unknown>[] = [];
  readonly served: ServedPlugin;
  closed = false;

  constructor(extensions: Record<string, ExtensionHandler> = {}) {
    this.served = servePlugin(
      {
        info: { name: 'rpc-test', version: '1.0.0', vendor: 'hvplug tests' },
        capabilities: {},
        handlers: {
          'vm/check': () => ({ ok: true, detail: 'fine' }),
          'vm/start': ({ vmId }, ctx) => {
            ctx.session.emit({ vmId, type: 'running' });
            return { status: 'running' };
          },
        },
        extensions,
        logger: stderrLogger('rpc-test', (line) => this.log.push(JSON.parse(line) as Record<string, unknown>)),
      },
      { input: this.input, output: this.out.stream, exitProcess: false },
    );
    void this.served.closed.then(() => (this.closed = true));
  }

  send(...msgs: (Record<string, unknown> | Buffer)[]): void {
    // One chunk: the plugin reads the whole burst at once, as from a pipe.
    this.input.write(Buffer.concat(msgs.map((m) => (Buffer.isBuffer(m) ? m : frame(m)))));
  }

  async initialize(): Promise<void> {
    this.send({
      id: 'init',
      method: 'initialize',
      params: { protocolVersions: [...PROTOCOL_VERSIONS], host: { name: 't', version: '0' }, stateDir: '/tmp', runtimeDir: '/tmp', logLevel: 'warn' },
    });
    expect((await this.out.answered('init')).result).toBeDefined();
  }

  async ping(id: string): Promise<Wire> {
    this.send({ id, method: 'health/ping', params: {} });
    return this.out.answered(id);
  }

  messages(level: number): string[] {
    return this.log.filter((l) => l.level === level).map((l) => String(l.msg));
  }

  close(): void {
    this.served.close();
    this.input.end();
  }
}

/** An extension that answers when the test says, with whether its call's signal was aborted by then. */
function gated(): { ext: ExtensionHandler; release: Map<unknown, () => void> } {
  const release = new Map<unknown, () => void>();
  return {
    release,
    ext: {
      handler: async (params, ctx) => {
        const key = (params as { key?: unknown } | undefined)?.key;
        await new Promise<void>((r) => release.set(key, r));
        return { key: key as string, aborted: ctx.signal.aborted };
      },
    },
  };
}

describe('plugin SDK dispatcher: answers and their order', () => {
  let plugin: Plugin;
  afterEach(() => plugin.close());

  it('answers by id when handlers settle out of order, dispatching the requests in the order read', async () => {
    const g = gated();
    plugin = new Plugin({ 'x-test/gated': g.ext });
    await plugin.initialize();
    plugin.send(
      { id: 1, method: 'x-test/gated', params: { key: 'a' } },
      { id: 2, method: 'x-test/gated', params: { key: 'b' } },
      { id: 3, method: 'vm/check', params: { vmId: VM } },
    );
    await untilTurns(() => g.release.size === 2, 'both gated calls in their handlers');
    expect([...g.release.keys()]).toEqual(['a', 'b']);
    expect((await plugin.out.answered(3)).result).toEqual({ ok: true, detail: 'fine' });
    g.release.get('b')?.();
    expect((await plugin.out.answered(2)).result).toEqual({ key: 'b', aborted: false });
    expect(plugin.out.answer(1)).toBeUndefined();
    g.release.get('a')?.();
    expect((await plugin.out.answered(1)).result).toEqual({ key: 'a', aborted: false });
    const order = plugin.out.messages.filter((m) => typeof m.id === 'number').map((m) => m.id);
    expect(order).toEqual([3, 2, 1]);
  });

  it('answers a burst of async handlers read in one chunk in a single write', async () => {
    plugin = new Plugin({ 'x-test/echo': { handler: async (params) => ({ echo: (params as { n: number }).n }) } });
    await plugin.initialize();
    const before = plugin.out.writes.length;
    const ids = Array.from({ length: 30 }, (_, i) => 100 + i);
    plugin.send(...ids.map((id) => ({ id, method: 'x-test/echo', params: { n: id } })));
    await untilTurns(() => ids.every((id) => plugin.out.answer(id)), 'all 30 answered');
    expect(plugin.out.writes.length - before).toBe(1);
    for (const id of ids) expect(plugin.out.answer(id)?.result).toEqual({ echo: id });
  });

  it("sends an event raised in a call with the call's answer, in one write", async () => {
    plugin = new Plugin();
    await plugin.initialize();
    const before = plugin.out.writes.length;
    plugin.send({ id: 7, method: 'vm/start', params: { vmId: VM } });
    await plugin.out.answered(7);
    expect(plugin.out.writes.length - before).toBe(1);
    expect(plugin.out.messages.slice(-2).map((m) => m.method ?? m.id)).toEqual(['vm/event', 7]);
  });

  it('answers a lone request without waiting on a call of an earlier read still under way', async () => {
    const g = gated();
    plugin = new Plugin({ 'x-test/gated': g.ext });
    await plugin.initialize();
    plugin.send({ id: 1, method: 'x-test/gated', params: { key: 'parked' } });
    await untilTurns(() => g.release.has('parked'), 'the parked call in its handler');
    plugin.send({ id: 2, method: 'vm/check', params: { vmId: VM } });
    // Promise jobs only: an answer held for the end of a burst would wait for setImmediate.
    for (let i = 0; i < 20 && !plugin.out.answer(2); i++) await Promise.resolve();
    expect(plugin.out.answer(2)?.result).toEqual({ ok: true, detail: 'fine' });
    g.release.get('parked')?.();
    expect((await plugin.out.answered(1)).result).toEqual({ key: 'parked', aborted: false });
  });

  it('answers an unknown method with MethodNotFound (-32601), and a result that cannot be sent with InternalError', async () => {
    plugin = new Plugin({ 'x-test/bigint': { handler: () => ({ n: 1n }) as never } });
    await plugin.initialize();
    plugin.send({ id: 1, method: 'x-nobody/here', params: {} }, { id: 2, method: 'x-test/bigint', params: {} });
    expect((await plugin.out.answered(1)).error).toEqual({ code: -32601, message: 'Unhandled method x-nobody/here' });
    expect((await plugin.out.answered(2)).error).toMatchObject({ code: ErrorCode.InternalError, message: expect.stringMatching(/x-test\/bigint failed.*BigInt/) });
  });
});

describe('plugin SDK dispatcher: cancellation', () => {
  let plugin: Plugin;
  afterEach(() => plugin.close());

  it('aborts the signal of a call cancelled in the same read, before its handler looked at it', async () => {
    const g = gated();
    plugin = new Plugin({ 'x-test/gated': g.ext });
    await plugin.initialize();
    plugin.send({ id: 1, method: 'x-test/gated', params: { key: 'a' } }, { method: '$/cancelRequest', params: { id: 1 } });
    await untilTurns(() => g.release.has('a'), 'the call in its handler');
    g.release.get('a')?.();
    expect((await plugin.out.answered(1)).result).toEqual({ key: 'a', aborted: true });
  });

  it('ignores a cancel of a call already answered, or of one not yet sent, and answers on', async () => {
    const g = gated();
    plugin = new Plugin({ 'x-test/gated': g.ext });
    await plugin.initialize();
    plugin.send({ id: 1, method: 'vm/check', params: { vmId: VM } });
    await plugin.out.answered(1);
    const writes = plugin.out.writes.length;
    plugin.send({ method: '$/cancelRequest', params: { id: 1 } }, { method: '$/cancelRequest', params: { id: 2 } });
    await turns(5);
    expect(plugin.out.writes.length).toBe(writes);
    // The id cancelled before it was used: its call is not cancelled.
    plugin.send({ id: 2, method: 'x-test/gated', params: { key: 'b' } });
    await untilTurns(() => g.release.has('b'), 'the call in its handler');
    g.release.get('b')?.();
    expect((await plugin.out.answered(2)).result).toEqual({ key: 'b', aborted: false });
    expect(plugin.messages(40)).toEqual([]);
  });
});

describe('plugin SDK dispatcher: what a hostile host sends', () => {
  let plugin: Plugin;
  afterEach(() => plugin.close());

  it('drops malformed messages with a logged reason that quotes none of them, and answers on', async () => {
    plugin = new Plugin();
    await plugin.initialize();
    const deep = `{"jsonrpc":"2.0","id":null,"params":${'['.repeat(50_000)}${']'.repeat(50_000)}}`;
    const raw = (text: string): Buffer => Buffer.from(`Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
    plugin.send(
      raw('[1,2]'),
      raw('42'),
      raw('"secret"'),
      raw('null'),
      raw(deep),
      { method: '$/cancelRequest', params: { id: { secret: 1 } } },
      { method: '$/cancelRequest' },
      { id: 9, method: 7 },
      { id: null, method: 'health/ping' },
      { id: 5, result: 'an answer to nothing' },
    );
    expect((await plugin.ping('after')).result).toMatchObject({ uptimeMs: expect.any(Number) });
    const warnings = plugin.messages(40);
    expect(warnings).toHaveLength(9);
    for (const w of warnings) expect(w).toMatch(/^dropped a message from the host: /);
    expect(warnings.join('\n')).not.toMatch(/secret|\[\[/);
    expect(warnings.filter((w) => w.includes('malformed $/cancelRequest'))).toHaveLength(2);
    expect(plugin.closed).toBe(false);
  });

  it('ends the session on an over-size frame, after answering what came before it, and reads nothing after it', async () => {
    const cap = process.env.HVPLUG_MAX_MESSAGE_BYTES;
    process.env.HVPLUG_MAX_MESSAGE_BYTES = '4096';
    try {
      plugin = new Plugin();
    } finally {
      if (cap === undefined) delete process.env.HVPLUG_MAX_MESSAGE_BYTES;
      else process.env.HVPLUG_MAX_MESSAGE_BYTES = cap;
    }
    await plugin.initialize();
    plugin.send({ id: 1, method: 'vm/check', params: { vmId: VM } }, Buffer.from('Content-Length: 5000\r\n\r\n'), { id: 2, method: 'vm/check', params: { vmId: VM } });
    await untilTurns(() => plugin.closed, 'the session ended');
    expect(plugin.out.answer(1)?.result).toEqual({ ok: true, detail: 'fine' });
    await turns(5);
    expect(plugin.out.answer(2)).toBeUndefined();
    expect(plugin.messages(50).join('\n')).toMatch(/protocol error on stdin/);
    expect(JSON.stringify(plugin.log)).toMatch(/exceeds the limit of 4096 bytes/);
  });

  it('ends the session on a message of over MAX_MESSAGE_VALUES values, as on an over-size frame', async () => {
    plugin = new Plugin();
    await plugin.initialize();
    const many = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'vm/check', params: { vmId: VM, pad: new Array<number>(MAX_MESSAGE_VALUES).fill(0) } });
    plugin.send({ id: 1, method: 'vm/check', params: { vmId: VM } }, Buffer.from(`Content-Length: ${many.length}\r\n\r\n${many}`));
    await untilTurns(() => plugin.closed, 'the session ended');
    expect(plugin.out.answer(1)?.result).toEqual({ ok: true, detail: 'fine' });
    expect(plugin.out.answer(2)).toBeUndefined();
    expect(JSON.stringify(plugin.log)).toMatch(/holds over 10,000 values/);
  });

  it('ends the session on a body that is not JSON', async () => {
    plugin = new Plugin();
    await plugin.initialize();
    plugin.send(Buffer.from('Content-Length: 3\r\n\r\n{{{'));
    await untilTurns(() => plugin.closed, 'the session ended');
    expect(JSON.stringify(plugin.log)).toMatch(/message body is not JSON/);
  });

  it('logs an event too large to send instead of failing the process, and answers on', async () => {
    const cap = process.env.HVPLUG_MAX_MESSAGE_BYTES;
    process.env.HVPLUG_MAX_MESSAGE_BYTES = '4096';
    try {
      plugin = new Plugin({
        'x-test/big-event': {
          handler: (_params, ctx) => {
            ctx.session.emit({ vmId: VM, type: 'guest-panic', detail: 'x'.repeat(8_192) } as never);
            return {};
          },
        },
      });
    } finally {
      if (cap === undefined) delete process.env.HVPLUG_MAX_MESSAGE_BYTES;
      else process.env.HVPLUG_MAX_MESSAGE_BYTES = cap;
    }
    await plugin.initialize();
    plugin.send({ id: 1, method: 'x-test/big-event', params: {} });
    expect((await plugin.out.answered(1)).result).toEqual({});
    await turns(5);
    expect((await plugin.ping('after')).result).toBeDefined();
    expect(plugin.messages(50).join('\n')).toMatch(/vm\/event/);
  });
});

describe('the dispatcher on its own', () => {
  it('answers every request of a read though a handler throws synchronously, and a thrown RpcError as it is', async () => {
    const input = new PassThrough();
    const out = new Output();
    const failures: unknown[] = [];
    const requests = new Map<string, RequestHandler>([
      ['boom', () => {
        throw new Error('sync boom');
      }],
      ['typed', () => {
        throw new RpcError(-32001, 'typed', { why: 'because' });
      }],
      ['fine', (params) => ({ got: params })],
    ]);
    const rpc = new RpcEndpoint({
      input,
      output: out.stream,
      write: (frames) => out.stream.write(frames),
      maxMessageBytes: 1 << 20,
      requests,
      notifications: new Map(),
      dropped: (reason) => failures.push(reason),
      failed: (err) => failures.push(err),
      ended: () => undefined,
    });
    input.write(Buffer.concat([frame({ id: 1, method: 'boom' }), frame({ id: 2, method: 'typed' }), frame({ id: 3, method: 'fine', params: [1] })]));
    await untilTurns(() => out.messages.length === 3, 'three answers');
    expect(out.writes).toHaveLength(1);
    expect(out.messages).toEqual([
      { jsonrpc: '2.0', id: 1, error: { code: -32603, message: 'Request boom failed with message: sync boom' } },
      { jsonrpc: '2.0', id: 2, error: { code: -32001, message: 'typed', data: { why: 'because' } } },
      { jsonrpc: '2.0', id: 3, result: { got: [1] } },
    ]);
    expect(failures).toEqual([]);
    rpc.stop();
  });

  it('ends the session, without throwing out of its listener, when writing to the output throws', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    const ended: unknown[] = [];
    const rpc = new RpcEndpoint({
      input,
      output,
      write: () => {
        throw new Error('the output is gone');
      },
      maxMessageBytes: 1 << 20,
      requests: new Map<string, RequestHandler>([['fine', () => ({})]]),
      notifications: new Map(),
      dropped: () => undefined,
      failed: () => undefined,
      ended: (err) => ended.push(err),
    });
    expect(() => input.write(frame({ id: 1, method: 'fine' }))).not.toThrow();
    await untilTurns(() => ended.length > 0, 'the session ended');
    expect(ended).toEqual([expect.objectContaining({ message: 'the output is gone' })]);
    rpc.stop();
  });
});
