// Counterexamples the fuzzer (test/integration/fuzz.test.ts) found, each replayed deterministically: against a real plugin
// process for what the SDK reads, through a real PluginClient and ShimHypervisor for what the host reads.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InitializeResult, MAX_JSON_DEPTH, PluginState, PROTOCOL_VERSIONS, VmConfig } from 'hvplug/protocol';
import { encodeFrame, FrameDecoder } from 'hvplug/transport';
import { HvplugError, PluginClient, PluginSpec, ProtocolViolationError, ShimHypervisor, type PluginChannel } from 'hvplug';
import { eventually, fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

afterEach(removeTempDirs);

/** n nested arrays, as text: JSON.stringify itself cannot write them past a few thousand. */
const deepArrays = (n: number): string => '['.repeat(n) + ']'.repeat(n);

const raw = (body: string): Buffer => Buffer.from(`Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
const frame = (msg: Record<string, unknown>): Buffer => encodeFrame(JSON.stringify({ jsonrpc: '2.0', ...msg }));

/** An SDK plugin (the replay fixture) on real pipes, spoken to byte by byte. */
class RawPlugin {
  readonly child: ChildProcess;
  readonly answers = new Map<unknown, Record<string, unknown>>();
  stderr = '';
  exit: number | null | undefined;
  private readonly decoder = new FrameDecoder();

  constructor() {
    this.child = spawn(fixture('replay'), [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (chunk: Buffer) => {
      for (const body of this.decoder.push(chunk)) {
        const msg = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
        if ('id' in msg) this.answers.set(msg.id, msg);
      }
    });
    this.child.stderr!.on('data', (c: Buffer) => void (this.stderr += c.toString('utf8')));
    this.child.on('exit', (code) => void (this.exit = code));
  }

  write(bytes: Buffer): void {
    this.child.stdin!.write(bytes);
  }

  async initialize(): Promise<void> {
    this.write(
      frame({
        id: 'init',
        method: 'initialize',
        params: { protocolVersions: [...PROTOCOL_VERSIONS], host: { name: 't', version: '0' }, stateDir: '/tmp', runtimeDir: '/tmp', logLevel: 'info' },
      }),
    );
    await eventually(() => this.answers.has('init') || this.exit !== undefined, 10_000, 'initialize answered');
    expect(this.answers.get('init')?.result).toBeDefined();
  }

  /** A health/ping after what was sent: answered if the plugin still reads, undefined if it died first. */
  async ping(id: string): Promise<Record<string, unknown> | undefined> {
    this.write(frame({ id, method: 'health/ping', params: {} }));
    await eventually(() => this.answers.has(id) || this.exit !== undefined, 10_000, `${id} answered or the plugin gone`);
    return this.answers.get(id);
  }

  async end(): Promise<number | null> {
    this.child.stdin!.end();
    await eventually(() => this.exit !== undefined, 10_000, 'plugin exited');
    return this.exit ?? null;
  }
}

async function survives(body: string): Promise<{ pong: Record<string, unknown> | undefined; exit: number | null; stderr: string }> {
  const plugin = new RawPlugin();
  await plugin.initialize();
  plugin.write(raw(body));
  const pong = await plugin.ping('after');
  const exit = await plugin.end();
  return { pong, exit, stderr: plugin.stderr };
}

describe('plugin SDK: a well-framed body that is not a JSON-RPC message', () => {
  // Fuzz counterexample: `Content-Length: 4\r\n\r\nnull` made the SDK's reader throw and the plugin exit 1.
  it.each(['null', '[]', '5', '"text"', 'true', '{}', '{"id":{}}', '{"method":5}'])(
    'is dropped with a warning, and the plugin reads on: %s',
    async (body) => {
      const r = await survives(body);
      expect(r.pong?.result).toMatchObject({ uptimeMs: expect.any(Number) });
      expect(r.exit).toBe(0);
      expect(r.stderr).toMatch(/not a JSON-RPC message/);
    },
    20_000,
  );

  // Fuzz: a body the SDK's library would log with JSON.stringify(msg, null, 4) (quadratic in its depth), or
  // overflow on: refused before it gets there, without writing it out.
  it('drops a deep body that is neither request, notification nor answer without echoing it', async () => {
    const r = await survives(`{"jsonrpc":"2.0","id":null,"params":${deepArrays(100_000)}}`);
    expect(r.pong?.result).toBeDefined();
    expect(r.exit).toBe(0);
    expect(r.stderr).toMatch(/not a JSON-RPC message/);
    expect(r.stderr.length).toBeLessThan(4_096);
  }, 20_000);

  it('drops an answer without id (the host sends none; the plugin asked nothing), deep error data included', async () => {
    const r = await survives(`{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m","data":${deepArrays(100_000)}}}`);
    expect(r.pong?.result).toBeDefined();
    expect(r.exit).toBe(0);
    expect(r.stderr).toMatch(/answer without id/);
    expect(r.stderr.length).toBeLessThan(4_096);
  }, 20_000);
});

describe('plugin SDK: a malformed $/cancelRequest', () => {
  // Fuzz counterexample: vscode-jsonrpc reads message.params.id outside any try; the plugin exited 1.
  it.each([
    '{"method":"$/cancelRequest"}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":null}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":"x"}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":[]}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":null}}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":{"a":1}}}',
  ])(
    'is dropped with a warning, and the plugin reads on: %s',
    async (body) => {
      const r = await survives(body);
      expect(r.pong?.result).toMatchObject({ uptimeMs: expect.any(Number) });
      expect(r.exit).toBe(0);
      expect(r.stderr).toMatch(/malformed \$\/cancelRequest/);
    },
    20_000,
  );

  it('a well-formed one still cancels', async () => {
    const plugin = new RawPlugin();
    await plugin.initialize();
    const dir = await tempDir();
    const path = join(dir, 'nothing');
    await writeFile(path, '');
    // x-replay/write never answers on its own; its handler rejects when the call is cancelled.
    plugin.write(frame({ id: 'w', method: 'x-replay/write', params: { path } }));
    // Answered in order: once the ping is, the call's handler is running and listens for the abort.
    expect((await plugin.ping('running'))?.result).toBeDefined();
    plugin.write(frame({ method: '$/cancelRequest', params: { id: 'w' } }));
    await eventually(() => plugin.answers.has('w'), 10_000, 'the cancelled call answered');
    expect(plugin.answers.get('w')?.error).toMatchObject({ message: expect.stringMatching(/cancelled/) });
    expect(await plugin.end()).toBe(0);
  }, 20_000);
});

describe('plugin state: nested at most MAX_JSON_DEPTH deep', () => {
  const nest = (n: number): unknown => JSON.parse(deepArrays(n)) as unknown;

  it('takes a state as deep as the cap and refuses one level more, saying so', () => {
    expect(PluginState.safeParse(nest(MAX_JSON_DEPTH)).success).toBe(true);
    const r = PluginState.safeParse({ a: nest(MAX_JSON_DEPTH) });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toMatch(new RegExp(`${MAX_JSON_DEPTH}`));
    expect(PluginState.safeParse(nest(100_000)).success).toBe(false);
  });

  // Fuzz counterexample: a result whose state is 100,000 nested arrays rejected vm/start with an untyped
  // RangeError from JSON.stringify in the shim's tracking, and could not have been written to the VM's record.
  it('a deep state in a plugin answer fails the call with a ProtocolViolationError naming the method', async () => {
    const dir = await tempDir();
    const client = await PluginClient.start(PluginSpec.parse({ name: 'replay', command: fixture('replay') }), {
      stateDir: dir,
      runtimeDir: dir,
      logger: memoryLogger().logger,
      logLevel: 'warn',
      hostVersion: '0',
    });
    try {
      // Ids: initialize 1, x-replay/write 2, vm/start 3 (sent in the same batch, before the plugin can answer).
      const path = join(dir, 'bytes');
      await writeFile(path, raw(`{"jsonrpc":"2.0","id":3,"result":{"status":"running","state":${deepArrays(100_000)}}}`));
      const channel: PluginChannel = {
        info: InitializeResult.parse({ ...client.info, capabilities: { ...client.info.capabilities, methods: ['vm/start'] } }),
        call: (method, params, opts) => client.call(method, params, opts),
        onNotification: (l) => client.onNotification(l),
      };
      const changes: unknown[] = [];
      const shim = new ShimHypervisor(channel, { onVmChange: (u) => void changes.push(u) });
      const vm = shim.adopt('vm-1', VmConfig.parse({}), 'created');
      const writing = client.call('x-replay/write', { path }, { timeoutMs: 5_000 }).catch(() => undefined);
      const err = await vm.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ProtocolViolationError);
      expect((err as HvplugError).message).toMatch(/vm\/start.*state.*nested at most/s);
      expect(changes).toEqual([]);
      expect(vm.status).toBe('created');
      void writing;
    } finally {
      await client.close({ graceMs: 300 });
    }
  }, 20_000);
});
