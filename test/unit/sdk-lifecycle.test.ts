import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, ErrorData, PROTOCOL_VERSIONS, type VmStatus } from 'hvplug/protocol';
import { encodeFrame, FrameDecoder } from 'hvplug/transport';
import { PluginError, servePlugin } from 'hvplug/plugin-sdk';
import { untilTurns } from '../helpers.js';

const VM = '6f1c8a52-3d4e-4b7a-9c2d-0e5f6a7b8c9d';
const OTHER = '0d7e4b1a-5c6f-4a2b-8e9d-1f2a3b4c5d6e';

interface Wire {
  id?: number;
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: unknown };
}

/** A plugin served in-process whose VMs' statuses the test sets, counting the handler calls that ran. */
class StatusPlugin {
  readonly input = new PassThrough();
  readonly output = new PassThrough();
  readonly messages: Wire[] = [];
  readonly statuses = new Map<string, VmStatus>();
  readonly ran: string[] = [];
  release: (() => void) | undefined;
  private readonly decoder = new FrameDecoder();
  private nextId = 1;

  constructor(withHook: boolean) {
    this.output.on('data', (chunk: Buffer) => {
      for (const body of this.decoder.push(chunk)) this.messages.push(JSON.parse(body.toString('utf8')) as Wire);
    });
    const vmOf = (vmId: string): VmStatus => {
      const s = this.statuses.get(vmId);
      if (!s) throw new PluginError('VmNotFound', `no VM ${vmId}`, { vmId });
      return s;
    };
    servePlugin(
      {
        info: { name: 'sdk-lifecycle', version: '1.0.0', vendor: 'hvplug tests' },
        capabilities: {},
        ...(withHook ? { vmStatus: (vmId: string) => this.statuses.get(vmId) } : {}),
        handlers: {
          'vm/start': async ({ vmId }) => {
            this.ran.push('vm/start');
            vmOf(vmId);
            await new Promise<void>((resolve) => (this.release = resolve));
            this.statuses.set(vmId, 'running');
            return { status: 'running' };
          },
          'vm/pause': ({ vmId }) => {
            this.ran.push('vm/pause');
            const s = vmOf(vmId);
            if (s !== 'running') throw new PluginError('InvalidState', `handler refused ${s}`, { vmId, current: s, required: ['running'] });
            this.statuses.set(vmId, 'paused');
            return { status: 'paused' };
          },
          'vm/wait': async ({ vmId }, ctx) => {
            this.ran.push('vm/wait');
            await new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(new PluginError('Cancelled', 'vm/wait was cancelled'))));
            return { status: vmOf(vmId), exitCode: null, reason: '' };
          },
        },
      },
      { input: this.input, output: this.output, exitProcess: false },
    );
  }

  call(method: string, params: Record<string, unknown>): number {
    const id = this.nextId++;
    this.input.write(encodeFrame(JSON.stringify({ jsonrpc: '2.0', id, method, params })));
    return id;
  }

  cancel(id: number): void {
    this.input.write(encodeFrame(JSON.stringify({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id } })));
  }

  async answer(id: number): Promise<Wire> {
    await untilTurns(() => this.messages.some((m) => m.id === id), `answer ${id}`);
    return this.messages.find((m) => m.id === id) as Wire;
  }

  async initialize(): Promise<void> {
    const id = this.call('initialize', {
      protocolVersions: [...PROTOCOL_VERSIONS],
      host: { name: 't', version: '0' },
      stateDir: '/tmp',
      runtimeDir: '/tmp',
      logLevel: 'silent',
    });
    await this.answer(id);
  }

  close(): void {
    this.input.end();
  }
}

describe('plugin SDK: the VM state machine before the handler', () => {
  let plugin: StatusPlugin;
  afterEach(() => plugin.close());

  it('refuses a forbidden transition with InvalidState, well-formed data and the table\'s required statuses, without running the handler', async () => {
    plugin = new StatusPlugin(true);
    await plugin.initialize();
    plugin.statuses.set(VM, 'created');
    const a = await plugin.answer(plugin.call('vm/pause', { vmId: VM }));
    expect(a.error?.code).toBe(ErrorCode.InvalidState);
    expect(ErrorData.InvalidState.parse(a.error?.data)).toEqual({ vmId: VM, current: 'created', required: ['running'] });
    expect(a.error?.message).toContain('created');
    expect(plugin.ran).toEqual([]);
  });

  it('runs the handler for an allowed transition, and for a VM the hook does not know (the handler answers VmNotFound)', async () => {
    plugin = new StatusPlugin(true);
    await plugin.initialize();
    plugin.statuses.set(VM, 'running');
    const paused = await plugin.answer(plugin.call('vm/pause', { vmId: VM }));
    expect(paused.result).toEqual({ status: 'paused' });
    const unknown = await plugin.answer(plugin.call('vm/pause', { vmId: OTHER }));
    expect(unknown.error?.code).toBe(ErrorCode.VmNotFound);
    expect(plugin.ran).toEqual(['vm/pause', 'vm/pause']);
  });

  it('brings the early refusal back once a status-changing handler has answered or thrown at once', async () => {
    plugin = new StatusPlugin(true);
    await plugin.initialize();
    plugin.statuses.set(VM, 'running');
    expect((await plugin.answer(plugin.call('vm/pause', { vmId: VM }))).result).toEqual({ status: 'paused' });
    // Unknown to the hook: the handler runs, and throws.
    expect((await plugin.answer(plugin.call('vm/pause', { vmId: OTHER }))).error?.code).toBe(ErrorCode.VmNotFound);
    plugin.statuses.set(VM, 'created');
    plugin.statuses.set(OTHER, 'created');
    expect((await plugin.answer(plugin.call('vm/pause', { vmId: VM }))).error?.code).toBe(ErrorCode.InvalidState);
    expect((await plugin.answer(plugin.call('vm/pause', { vmId: OTHER }))).error?.code).toBe(ErrorCode.InvalidState);
    expect(plugin.ran).toEqual(['vm/pause', 'vm/pause']);
  });

  it('leaves the decision to the handler while a call that changes the VM\'s status is under way on it', async () => {
    plugin = new StatusPlugin(true);
    await plugin.initialize();
    plugin.statuses.set(VM, 'created');
    const start = plugin.call('vm/start', { vmId: VM });
    await untilTurns(() => plugin.release !== undefined, 'vm/start in its handler');
    // Queued behind vm/start in a real plugin, this pause finds the VM running: the SDK must not refuse it early.
    const pause = plugin.call('vm/pause', { vmId: VM });
    await untilTurns(() => plugin.ran.includes('vm/pause'), 'vm/pause reached its handler');
    plugin.release?.();
    expect((await plugin.answer(start)).result).toEqual({ status: 'running' });
    expect((await plugin.answer(pause)).error?.message).toBe('handler refused created');
    // Once the start is over, the early refusal is back.
    plugin.statuses.set(VM, 'created');
    const again = await plugin.answer(plugin.call('vm/pause', { vmId: VM }));
    expect(again.error?.code).toBe(ErrorCode.InvalidState);
    expect(plugin.ran).toEqual(['vm/start', 'vm/pause']);
  });

  it('does not let a pending vm/wait (which changes nothing) turn the early refusal off', async () => {
    plugin = new StatusPlugin(true);
    await plugin.initialize();
    plugin.statuses.set(VM, 'stopped');
    const wait = plugin.call('vm/wait', { vmId: VM });
    await untilTurns(() => plugin.ran.includes('vm/wait'), 'vm/wait in its handler');
    const a = await plugin.answer(plugin.call('vm/pause', { vmId: VM }));
    expect(a.error?.code).toBe(ErrorCode.InvalidState);
    plugin.cancel(wait);
    const cancelled = await plugin.answer(wait);
    expect(cancelled.error?.code).toBe(ErrorCode.Cancelled);
    // The SDK fills in the data a Cancelled error carries when the handler gave none.
    expect(ErrorData.Cancelled.parse(cancelled.error?.data)).toEqual({ method: 'vm/wait' });
  });

  it('runs every handler when the plugin gives no status hook', async () => {
    plugin = new StatusPlugin(false);
    await plugin.initialize();
    plugin.statuses.set(VM, 'created');
    const a = await plugin.answer(plugin.call('vm/pause', { vmId: VM }));
    expect(a.error?.message).toBe('handler refused created');
    expect(plugin.ran).toEqual(['vm/pause']);
  });
});
