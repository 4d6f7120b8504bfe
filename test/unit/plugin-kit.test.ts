import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { ErrorCode, PROTOCOL_VERSIONS } from 'hvplug/protocol';
import { encodeFrame, FrameDecoder } from 'hvplug/transport';
import { errors, PluginError, proc, SerialQueue, servePlugin, ServedVm, settings, translating, VmRegistry, Waiters, type EventInput } from 'hvplug/plugin-sdk';
import { untilTurns } from '../helpers.js';

const VM = '6f1c8a52-3d4e-4b7a-9c2d-0e5f6a7b8c9d';


class WaitingVm extends ServedVm {
  wait(signal: AbortSignal): ReturnType<ServedVm['waitFor']> {
    return this.waitFor(undefined, signal);
  }
  get waiting(): number {
    return this.waiters.size;
  }
}

describe('plugin kit', () => {
  it('a cancelled vm/wait is answered Cancelled on the wire (not InternalError), and its waiter is dropped', async () => {
    const registry = new VmRegistry<WaitingVm>();
    const input = new PassThrough();
    const output = new PassThrough();
    const messages: { id?: number; error?: { code: number; message: string; data?: unknown } }[] = [];
    const decoder = new FrameDecoder();
    output.on('data', (chunk: Buffer) => {
      for (const body of decoder.push(chunk)) messages.push(JSON.parse(body.toString('utf8')) as (typeof messages)[number]);
    });
    const served = servePlugin(
      {
        info: { name: 'kit-test', version: '1.0.0', vendor: 'hvplug tests' },
        capabilities: {},
        handlers: { 'vm/wait': ({ vmId }, ctx) => registry.require(vmId).wait(ctx.signal) },
        onInitialize: (s) => {
          registry.init(s);
          registry.add(new WaitingVm(VM, 'running', registry.emit));
        },
      },
      { input, output, exitProcess: false },
    );
    const send = (m: object): void => void input.write(encodeFrame(JSON.stringify({ jsonrpc: '2.0', ...m })));
    send({ id: 1, method: 'initialize', params: { protocolVersions: [...PROTOCOL_VERSIONS], host: { name: 't', version: '1' }, stateDir: '/tmp', runtimeDir: '/tmp' } });
    await untilTurns(() => messages.some((m) => m.id === 1), 'initialize answered');
    send({ id: 2, method: 'vm/wait', params: { vmId: VM } });
    await untilTurns(() => registry.require(VM).waiting === 1, 'the wait is pending');
    send({ method: '$/cancelRequest', params: { id: 2 } });
    await untilTurns(() => messages.some((m) => m.id === 2), 'vm/wait answered');
    const answer = messages.find((m) => m.id === 2);
    expect(answer?.error?.code).toBe(ErrorCode.Cancelled);
    expect(answer?.error?.data).toEqual({ method: 'vm/wait' });
    expect(registry.require(VM).waiting).toBe(0);
    input.end();
    await served.closed;
  });

  it('waiters: settle answers those waiting; an aborted one is removed and rejects Cancelled', async () => {
    const w = new Waiters<number>();
    const ac = new AbortController();
    const kept = w.wait(undefined, new AbortController().signal);
    const dropped = w.wait(undefined, ac.signal);
    expect(w.size).toBe(2);
    ac.abort();
    await expect(dropped).rejects.toMatchObject({ codeName: 'Cancelled' });
    expect(w.size).toBe(1);
    w.settle(7);
    await expect(kept).resolves.toBe(7);
    expect(w.size).toBe(0);
    await expect(w.wait(3, ac.signal)).resolves.toBe(3);
    await expect(w.wait(undefined, ac.signal)).rejects.toBeInstanceOf(PluginError);
  });

  it('serial queue: calls run one at a time in order; one cancelled while queued never runs and does not hold the others', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    let releaseFirst: () => void = () => undefined;
    const first = q.run(async () => {
      log.push('first start');
      await new Promise<void>((r) => (releaseFirst = r));
      log.push('first end');
      return 1;
    });
    const ac = new AbortController();
    const second = q.run(() => {
      log.push('second');
      return 2;
    }, ac.signal);
    const third = q.run(() => {
      log.push('third');
      return 3;
    });
    const failing = q.run(() => {
      throw new Error('boom');
    });
    const fifth = q.run(() => 5);
    await untilTurns(() => log.length === 1, 'first started');
    ac.abort();
    await expect(second).rejects.toMatchObject({ codeName: 'Cancelled' });
    expect(log).toEqual(['first start']);
    releaseFirst();
    expect(await Promise.all([first, third])).toEqual([1, 3]);
    await expect(failing).rejects.toThrow('boom');
    await expect(fifth).resolves.toBe(5);
    expect(log).toEqual(['first start', 'first end', 'third']);
  });

  it('serial queue, given a call context: its signal is made only for a call that waits; a cancelled call never runs', async () => {
    const q = new SerialQueue();
    const contextOf = (): { signalsMade: number; cancelled: boolean; abort: () => void; readonly signal: AbortSignal } => {
      const ac = new AbortController();
      return {
        signalsMade: 0,
        cancelled: false,
        abort() {
          this.cancelled = true;
          ac.abort();
        },
        get signal() {
          this.signalsMade++;
          return ac.signal;
        },
      };
    };
    const alone = contextOf();
    await expect(q.run(() => 'ran', alone)).resolves.toBe('ran');
    expect(alone.signalsMade).toBe(0);

    // Cancelled in the same turn as its request (both in one read): the call never runs.
    const cancelledAtOnce = contextOf();
    let ran = false;
    const p = q.run(() => (ran = true), cancelledAtOnce);
    cancelledAtOnce.abort();
    await expect(p).rejects.toMatchObject({ codeName: 'Cancelled' });
    expect(ran).toBe(false);

    let release: () => void = () => undefined;
    const first = q.run(() => new Promise<void>((r) => (release = r)));
    const waiting = contextOf();
    const second = q.run(() => (ran = true), waiting);
    expect(waiting.signalsMade).toBe(1);
    waiting.abort();
    await expect(second).rejects.toMatchObject({ codeName: 'Cancelled' });
    release();
    await first;
    expect(ran).toBe(false);
    await expect(q.run(() => 'after')).resolves.toBe('after');
  });

  it('a VM: require() by status or by the table, events stamped with its id, a status announced once, silence after forget', () => {
    const sent: EventInput[] = [];
    const vm = new ServedVm(VM, 'created', (e) => sent.push(e));
    expect(() => vm.requireFor('vm/pause')).toThrow(expect.objectContaining({ codeName: 'InvalidState', data: { vmId: VM, current: 'created', required: ['running'] } }) as Error);
    vm.requireFor('vm/start');
    vm.announce('running');
    vm.announce('running');
    vm.announce('paused');
    vm.announce('resumed');
    expect(vm.status).toBe('running');
    vm.assumeAnnounced('stopped');
    vm.announce('stopped');
    vm.emit({ type: 'device-added', deviceId: 'd1' });
    vm.forget();
    vm.emit({ type: 'device-removed', deviceId: 'd1' });
    expect(sent).toEqual([
      { vmId: VM, type: 'running' },
      { vmId: VM, type: 'paused' },
      { vmId: VM, type: 'resumed' },
      { vmId: VM, type: 'device-added', deviceId: 'd1' },
    ]);
  });

  it('registry: require() answers VmNotFound, add() AlreadyExists, status() what the VM says', () => {
    const r = new VmRegistry<ServedVm>();
    expect(() => r.require(VM)).toThrow(expect.objectContaining({ codeName: 'VmNotFound', data: { vmId: VM } }) as Error);
    expect(() => r.emit({ vmId: VM, type: 'running' })).toThrow('not initialized');
    const vm = r.add(new ServedVm(VM, 'paused', () => undefined));
    expect(r.require(VM)).toBe(vm);
    expect(() => r.add(new ServedVm(VM, 'created', () => undefined))).toThrow(expect.objectContaining({ codeName: 'AlreadyExists' }) as Error);
    expect(r.status(VM)).toBe('paused');
    r.delete(VM);
    expect(r.status(VM)).toBeUndefined();
  });

  it('errors.cancelled names the method when given', () => {
    expect(errors.cancelled('vm/start')).toMatchObject({ codeName: 'Cancelled', code: ErrorCode.Cancelled, data: { method: 'vm/start' } });
    expect(errors.cancelled().data).toBeUndefined();
  });

  it('translating: a PluginError stands, an abort is Cancelled, the VMM\'s errors are translated, the rest passes on', async () => {
    class VmmSaid extends Error {}
    const translate = (err: unknown): PluginError | undefined => (err instanceof VmmSaid ? errors.vmmFailure(err.message, 7) : undefined);
    const failing = (err: unknown) => (): Promise<never> => Promise.reject(err);
    await expect(translating(failing(errors.vmNotFound(VM)), translate)).rejects.toMatchObject({ codeName: 'VmNotFound' });
    await expect(translating(failing(new DOMException('gone', 'AbortError')), translate)).rejects.toMatchObject({ codeName: 'Cancelled' });
    await expect(translating(failing(new VmmSaid('no')), translate)).rejects.toMatchObject({ codeName: 'VmmFailure', data: { vmmMessage: 'no', vmmCode: 7 } });
    const other = new Error('plain');
    await expect(translating(failing(other), translate)).rejects.toBe(other);
    await expect(translating(() => Promise.resolve(5), translate)).resolves.toBe(5);
  });

  it('settings: one zod declaration gives the defaults, the parser (issues under plugin.) and the published JSON Schema', () => {
    const s = settings(
      z.strictObject({
        mode: z.enum(['a', 'b']).default('a').describe('which'),
        agent: z.strictObject({ port: z.number().int().min(1).default(1024) }).prefault({}),
      }),
      { title: 'test options' },
    );
    expect(s.defaults).toEqual({ mode: 'a', agent: { port: 1024 } });
    expect(s.parse({ mode: 'b' })).toEqual({ mode: 'b', agent: { port: 1024 } });
    const bad = s.safeParse({ agent: { port: 0 }, extra: 1 });
    expect(bad.ok).toBe(false);
    expect(bad.issues.map((i) => i.path.join('.')).sort()).toEqual(['plugin.agent.port', 'plugin.extra']);
    expect(bad.issues.find((i) => i.path.join('.') === 'plugin.extra')?.message).toBe('is not a known setting');
    expect(() => s.parse({ mode: 'c' })).toThrow(expect.objectContaining({ codeName: 'InvalidConfig' }) as Error);
    expect(s.jsonSchema).toMatchObject({
      title: 'test options',
      type: 'object',
      additionalProperties: false,
      properties: { mode: { enum: ['a', 'b'], default: 'a', description: 'which' } },
    });
    expect(() => settings(z.object({ needed: z.string() }))).toThrow('every setting needs a default');
  });

  it('proc: reads a live process, knows it by its start time, and sees a reaped one gone', async () => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'kit-probe-arg'], { stdio: 'ignore' });
    await once(child, 'spawn');
    const pid = child.pid!;
    const stat = proc.readStat(pid);
    expect(stat?.ppid).toBe(process.pid);
    expect(stat?.pgrp).toBe(proc.readStat(process.pid)?.pgrp);
    expect(proc.isRunning(pid, stat?.startTicks)).toBe(true);
    expect(stat?.threads).toBeGreaterThanOrEqual(1);
    expect(proc.isRunning(pid, (stat?.startTicks ?? 0) + 1)).toBe(false);
    expect(proc.runningStat(pid, stat?.startTicks)?.state).toMatch(/^[RSD]$/);
    expect(proc.runningStat(pid, (stat?.startTicks ?? 0) + 1)).toBeUndefined();
    expect(proc.cmdline(pid)).toEqual([process.execPath, '-e', 'setTimeout(() => {}, 60000)', 'kit-probe-arg']);
    expect(proc.descendants(process.pid)).toContain(pid);
    expect(proc.threadIds(pid)[0]).toBe(pid);
    expect(proc.statusNumbers(pid).get('Pid')).toBe(pid);
    expect(proc.statusNumbers(pid).get('VmRSS')).toBeGreaterThan(0);
    expect(proc.bootId()).toMatch(/^[0-9a-f-]{36}$/);
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(proc.isAlive(pid)).toBe(false);
    expect(proc.readStat(pid)).toBeUndefined();
    expect(proc.runningStat(pid, stat?.startTicks)).toBeUndefined();
    expect(proc.cmdline(pid)).toBeUndefined();
    expect(proc.threadIds(pid)).toEqual([]);
    expect(proc.statusNumbers(pid).size).toBe(0);
  });
});
