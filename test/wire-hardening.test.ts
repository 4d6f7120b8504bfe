// Counterexamples the fuzzer (test/fuzz.test.ts) found, each replayed deterministically: against a real plugin
// process for what the SDK reads, through a real PluginClient and ShimHypervisor for what the host reads.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, PROTOCOL_VERSIONS } from 'hvplug/protocol';
import { eventually, fixture, removeTempDirs, tempDir } from './helpers.js';

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
