import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PROTOCOL_VERSIONS } from 'hvplug/protocol';
import { encodeFrame, FrameDecoder } from 'hvplug/transport';
import * as z from 'zod';
import * as zm from 'zod/mini';
import { PluginError, servePlugin, settings, stateCodec, type ServedPlugin } from 'hvplug/plugin-sdk';
import { untilTurns } from '../helpers.js';

const VM = '6f1c8a52-3d4e-4b7a-9c2d-0e5f6a7b8c9d';

interface Wire {
  id?: number;
  method?: string;
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: unknown };
}


/** The SDK served in-process over two pipes, recording every write it makes to its output. */
class InProcessPlugin {
  readonly input = new PassThrough();
  readonly output = new PassThrough();
  readonly writes: Buffer[] = [];
  readonly messages: Wire[] = [];
  readonly served: ServedPlugin;
  /** Set while a vm/start is in its handler: ends it. */
  release: (() => void) | undefined;
  private readonly decoder = new FrameDecoder();

  constructor() {
    this.output.on('data', (chunk: Buffer) => {
      this.writes.push(chunk);
      for (const body of this.decoder.push(chunk)) this.messages.push(JSON.parse(body.toString('utf8')) as Wire);
    });
    this.served = servePlugin(
      {
        info: { name: 'sdk-test', version: '1.0.0', vendor: 'hvplug tests' },
        capabilities: {},
        handlers: {
          'vm/check': () => ({ ok: true, detail: 'fine' }),
          'vm/start': async (_params, ctx) => {
            await new Promise<void>((resolve, reject) => {
              this.release = resolve;
              ctx.signal.addEventListener('abort', () => reject(new Error('cancelled by the host')));
            });
            this.release = undefined;
            ctx.session.emit({ vmId: VM, type: 'running' });
            return { status: 'running' };
          },
        },
      },
      { input: this.input, output: this.output, exitProcess: false },
    );
  }

  send(...msgs: Record<string, unknown>[]): void {
    // One chunk: the plugin reads the whole burst at once, as from a pipe.
    this.input.write(Buffer.concat(msgs.map((m) => encodeFrame(JSON.stringify({ jsonrpc: '2.0', ...m })))));
  }

  answer(id: number): Wire | undefined {
    return this.messages.find((m) => m.id === id);
  }

  async initialize(): Promise<void> {
    this.send({
      id: 0,
      method: 'initialize',
      params: { protocolVersions: [...PROTOCOL_VERSIONS], host: { name: 't', version: '0' }, stateDir: '/tmp', runtimeDir: '/tmp', logLevel: 'warn' },
    });
    await untilTurns(() => this.answer(0) !== undefined, 'initialize answered');
  }

  close(): void {
    this.served.close();
    this.input.end();
  }
}

describe('plugin SDK: answers leave in one write per burst', () => {
  let plugin: InProcessPlugin;
  beforeEach(async () => {
    // The SDK's hold timer can never fire: any answer seen below was flushed by the burst logic itself.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    plugin = new InProcessPlugin();
    await plugin.initialize();
  });
  afterEach(() => {
    plugin.close();
    vi.useRealTimers();
  });

  it('answers a burst of requests read together in a single write, each answer intact', async () => {
    const before = plugin.writes.length;
    const ids = Array.from({ length: 50 }, (_, i) => 100 + i);
    plugin.send(...ids.map((id) => ({ id, method: 'vm/check', params: { vmId: VM } })));
    await untilTurns(() => ids.every((id) => plugin.answer(id)), 'all 50 answered');
    expect(plugin.writes.length - before).toBe(1);
    for (const id of ids) expect(plugin.answer(id)?.result).toEqual({ ok: true, detail: 'fine' });
  });

  it('answers a lone request at once, and one after another each in its own write', async () => {
    for (const id of [1, 2, 3]) {
      const before = plugin.writes.length;
      plugin.send({ id, method: 'vm/check', params: { vmId: VM } });
      await untilTurns(() => plugin.answer(id) !== undefined, `request ${id} answered without the hold timer`);
      expect(plugin.writes.length - before).toBe(1);
    }
  });

  it("sends a call's events with its answer, in one write (the host reads them together and records them once)", async () => {
    plugin.send({ id: 20, method: 'vm/start', params: { vmId: VM } });
    await untilTurns(() => plugin.release !== undefined, 'the start in its handler');
    const before = plugin.writes.length;
    plugin.release?.();
    await untilTurns(() => plugin.answer(20) !== undefined, 'the start answered without the hold timer');
    expect(plugin.writes.length - before).toBe(1);
    const event = plugin.messages.findIndex((m) => m.method === 'vm/event');
    expect(event).toBeGreaterThanOrEqual(0);
    expect(event).toBeLessThan(plugin.messages.findIndex((m) => m.id === 20));
  });

  it('does not hold a quick answer behind a slow call, nor the slow answer once it is ready', async () => {
    plugin.send({ id: 10, method: 'vm/start', params: { vmId: VM } });
    plugin.send({ id: 11, method: 'vm/check', params: { vmId: VM } });
    await untilTurns(() => plugin.answer(11) !== undefined, 'the check answered while the start is in progress');
    expect(plugin.answer(10)).toBeUndefined();
    plugin.release?.();
    await untilTurns(() => plugin.answer(10) !== undefined, 'the start answered once done');
    expect(plugin.answer(10)?.result).toEqual({ status: 'running' });
    // The event the handler emitted left before its answer, in the same order as written.
    const event = plugin.messages.findIndex((m) => m.method === 'vm/event');
    expect(event).toBeGreaterThanOrEqual(0);
    expect(event).toBeLessThan(plugin.messages.findIndex((m) => m.id === 10));
  });

  it('keeps answering at once after cancellations, which start no call of their own', async () => {
    plugin.send({ id: 20, method: 'vm/start', params: { vmId: VM } });
    await untilTurns(() => plugin.release !== undefined, 'start in its handler');
    plugin.send({ method: '$/cancelRequest', params: { id: 20 } }, { method: '$/cancelRequest', params: { id: 999 } });
    await untilTurns(() => plugin.answer(20) !== undefined, 'the cancelled start answered');
    expect(plugin.answer(20)?.error?.message).toMatch(/cancelled/);
    plugin.send({ id: 21, method: 'vm/check', params: { vmId: VM } });
    await untilTurns(() => plugin.answer(21) !== undefined, 'a later request answered without the hold timer');
  });
});

/** A plugin's stdin and stdout as streams of this process, and the messages the plugin wrote, decoded as they come. */
function pipes(): { input: PassThrough; output: PassThrough; messages: Wire[] } {
  const input = new PassThrough();
  const output = new PassThrough();
  const messages: Wire[] = [];
  const decoder = new FrameDecoder();
  output.on('data', (c: Buffer) => messages.push(...decoder.push(c).map((b) => JSON.parse(b.toString('utf8')) as Wire)));
  return { input, output, messages };
}

describe('plugin SDK: a host that speaks an older protocol version', () => {
  it('is told only of the methods of the version chosen, and a call of a newer one is refused as not in it', async () => {
    const { input, output, messages } = pipes();
    const migrate = vi.fn(() => ({ totalMs: 1, transferredBytes: 0 }));
    const served = servePlugin(
      {
        info: { name: 'newer', version: '1.0.0', vendor: 'hvplug tests' },
        capabilities: {},
        handlers: {
          'vm/check': () => ({ ok: true, detail: '' }),
          'vm/migrate': migrate,
          'vm/receiveMigration': () => ({ status: 'created' as const, uri: 'unix:/run/x.sock' }),
        },
      },
      { input, output, exitProcess: false },
    );
    const send = (id: number, method: string, params: object): void => void input.write(encodeFrame(JSON.stringify({ jsonrpc: '2.0', id, method, params })));
    send(0, 'initialize', { protocolVersions: ['1.0.0'], host: { name: 'older', version: '0' }, stateDir: '/tmp', runtimeDir: '/tmp' });
    await untilTurns(() => messages.some((m) => m.id === 0), 'initialize answered');
    const init = messages.find((m) => m.id === 0)?.result as { protocolVersion: string; capabilities: { methods: string[] } };
    expect(init.protocolVersion).toBe('1.0.0');
    expect(init.capabilities.methods).toEqual(['vm/check']);
    send(1, 'vm/migrate', { vmId: VM, uri: 'unix:/run/x.sock' });
    await untilTurns(() => messages.some((m) => m.id === 1), 'vm/migrate answered');
    expect(messages.find((m) => m.id === 1)?.error).toMatchObject({ code: -31001, data: { method: 'vm/migrate', reason: 'came in protocol 1.1.0' } });
    expect(migrate).not.toHaveBeenCalled();
    served.close();
    input.end();
  });
});

describe('plugin SDK: a definition given as a function', () => {
  it('is built when the plugin starts serving, and served like an object', async () => {
    let built = 0;
    const { input, output, messages } = pipes();
    const served = servePlugin(
      () => {
        built++;
        return { info: { name: 'late', version: '1.0.0', vendor: 'hvplug tests' }, capabilities: {}, handlers: { 'vm/check': () => ({ ok: true, detail: 'late' }) } };
      },
      { input, output, exitProcess: false },
    );
    expect(built).toBe(1);
    input.write(
      encodeFrame(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 0,
          method: 'initialize',
          params: { protocolVersions: [...PROTOCOL_VERSIONS], host: { name: 't', version: '0' }, stateDir: '/tmp', runtimeDir: '/tmp' },
        }),
      ),
    );
    await untilTurns(() => messages.some((m) => m.id === 0), 'initialize answered');
    expect(messages[0]?.result).toMatchObject({ plugin: { name: 'late' }, capabilities: { methods: ['vm/check'] } });
    served.close();
    input.end();
  });
});

describe('plugin SDK: zod schemas of the plugin\'s own, of zod\'s classic API or of zod/mini', () => {
  it('answers a zod error a handler throws as InvalidConfig with its issues, whichever API threw it', async () => {
    const { input, output, messages } = pipes();
    const served = servePlugin(
      {
        info: { name: 'zod-errors', version: '1.0.0', vendor: 'hvplug tests' },
        capabilities: {},
        handlers: {
          'vm/check': () => {
            zm.object({ port: zm.number() }).parse({ port: 'x' });
            return { ok: true, detail: '' };
          },
          'vm/pause': () => {
            z.object({ port: z.number() }).parse({ port: 'x' });
            return { status: 'paused' as const };
          },
        },
      },
      { input, output, exitProcess: false },
    );
    const send = (id: number, method: string, params: object): void => void input.write(encodeFrame(JSON.stringify({ jsonrpc: '2.0', id, method, params })));
    send(0, 'initialize', { protocolVersions: [...PROTOCOL_VERSIONS], host: { name: 't', version: '0' }, stateDir: '/tmp', runtimeDir: '/tmp' });
    send(1, 'vm/check', { vmId: 'vm1' });
    send(2, 'vm/pause', { vmId: 'vm1' });
    await untilTurns(() => messages.some((m) => m.id === 2) && messages.some((m) => m.id === 1), 'both calls answered');
    for (const id of [1, 2]) {
      expect(messages.find((m) => m.id === id)?.error, `call ${id}`).toMatchObject({
        code: -31005,
        data: { issues: [{ path: ['port'], message: 'Invalid input: expected number, received string' }] },
      });
    }
    served.close();
    input.end();
  });

  it('settings and stateCodec take zod/mini schemas as they take classic ones', () => {
    const s = settings(zm.strictObject({ port: zm._default(zm.number().check(zm.int(), zm.minimum(1)), 1024) }));
    expect(s.defaults).toEqual({ port: 1024 });
    expect(s.safeParse({ port: 0, extra: 1 }).issues).toEqual([
      { path: ['plugin', 'port'], message: 'Too small: expected number to be >=1' },
      { path: ['plugin', 'extra'], message: 'is not a known setting' },
    ]);
    expect(s.jsonSchema).toMatchObject({ type: 'object', additionalProperties: false, properties: { port: { type: 'integer', minimum: 1, default: 1024 } } });
    const codec = stateCodec('acme/mini', 1, { pid: zm.nullable(zm.number().check(zm.int(), zm.positive())) });
    expect(codec.decode(codec.encode({ pid: 7 }), 'vm/recover')).toEqual({ pid: 7 });
    expect(codec.safeDecode({ format: 'acme/mini', version: 1, pid: -1 })).toEqual({
      ok: false,
      issues: [{ path: ['state', 'pid'], message: 'Too small: expected number to be >0' }],
    });
  });
});

describe('stateCodec: a plugin\'s opaque VM state', () => {
  const codec = stateCodec('acme/vm-state', 2, { pid: z.number().int().positive().nullable(), dir: z.string().regex(/^\//), tags: z.array(z.string()) });

  it('stamps the blob with format and version, and decodes it back to the same state', () => {
    const state = { pid: 42, dir: '/run/acme/vm1', tags: ['a'] };
    const blob = codec.encode(state);
    expect(blob).toEqual({ format: 'acme/vm-state', version: 2, pid: 42, dir: '/run/acme/vm1', tags: ['a'] });
    expect(codec.decode(blob, 'vm/recover')).toEqual(state);
  });

  it('tells a blob of another format or version as such, at state', () => {
    expect(codec.safeDecode({ format: 'acme/vm-state', version: 1, pid: 1 })).toEqual({
      ok: false,
      issues: [{ path: ['state'], message: 'is not a acme/vm-state version 2 state (format "acme/vm-state", version 1)' }],
    });
    expect(codec.safeDecode('a string')).toMatchObject({ ok: false, issues: [{ path: ['state'] }] });
  });

  it('refuses a malformed field with InvalidParams naming its path under state', () => {
    const err = (() => {
      try {
        codec.decode({ format: 'acme/vm-state', version: 2, pid: -1, dir: 'relative', tags: [] }, 'vm/recover');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(PluginError);
    expect(err).toMatchObject({ codeName: 'InvalidParams', data: { method: 'vm/recover' } });
    const paths = (err as PluginError).data?.issues as { path: unknown[] }[];
    expect(paths.map((i) => i.path.join('.'))).toEqual(['state.pid', 'state.dir']);
  });
});
