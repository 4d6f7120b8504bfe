import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import pino from 'pino';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from 'vscode-jsonrpc/node';
import { PluginHost, type ShimHypervisor, type ShimVm } from 'hvplug';
import { encodeFrame } from 'hvplug/transport';

type Child = ChildProcessByStdio<Writable, Readable, null>;

/** A call the drivers can repeat: one request, resolved when its answer is back. */
export type Call = () => Promise<unknown>;

/** The request every figure sends: a no-op VM call with a VM id of the shim's format. */
export const VM_ID = '6f1c8a52-3d4e-4b7a-9c2d-0e5f6a7b8c9d';
export const METHOD = 'vm/check';

function spawnHelper(bundle: string): Child {
  // stderr inherited: a crashing helper says why on the bench's own stderr.
  return spawn(process.execPath, [bundle], { stdio: ['pipe', 'pipe', 'inherit'] });
}

async function stop(child: Child): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.stdin.end();
  const t = setTimeout(() => child.kill('SIGKILL'), 2_000);
  await exited;
  clearTimeout(t);
}

/**
 * Raw pipe echo: the exact bytes the shim puts on the wire for one call (Content-Length frame, same JSON),
 * echoed back by a process that does nothing else. The floor for a round trip between two node processes.
 */
export class RawPipeEcho {
  private readonly child: Child;
  private want = 0;
  private got = 0;
  private wake: (() => void) | undefined;
  private id = 0;

  constructor(bundle: string) {
    this.child = spawnHelper(bundle);
    this.child.stdout.on('data', (c: Buffer) => {
      this.got += c.length;
      if (this.got >= this.want && this.wake) {
        const w = this.wake;
        this.wake = undefined;
        w();
      }
    });
  }

  /** The frame PluginClient would send for the n-th call (ids grow in digits like the shim's). */
  frame(): Buffer {
    return encodeFrame(JSON.stringify({ jsonrpc: '2.0', id: this.id++, method: METHOD, params: { vmId: VM_ID } }));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  readonly call: Call = () => {
    const frame = this.frame();
    this.want += frame.length;
    return new Promise<void>((resolve) => {
      this.wake = resolve;
      this.child.stdin.write(frame);
    });
  };

  close(): Promise<void> {
    return stop(this.child);
  }
}

/** Raw newline-delimited JSON-RPC: JSON.stringify + one write per request, split + JSON.parse per answer. */
export class NdjsonEcho {
  private readonly child: Child;
  private readonly pending = new Map<number, (v: unknown) => void>();
  private id = 0;
  private partial = '';

  constructor(bundle: string) {
    this.child = spawnHelper(bundle);
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      const text = this.partial + chunk;
      let start = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
        const msg = JSON.parse(text.slice(start, nl)) as { id: number; result: unknown };
        const resolve = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        resolve?.(msg.result);
        start = nl + 1;
      }
      this.partial = text.slice(start);
    });
  }

  readonly call: Call = () =>
    new Promise((resolve) => {
      const id = this.id++;
      this.pending.set(id, resolve);
      this.child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id, method: METHOD, params: { vmId: VM_ID } })}\n`);
    });

  close(): Promise<void> {
    return stop(this.child);
  }
}

/** Bare vscode-jsonrpc on both ends, default StreamMessageReader/StreamMessageWriter, no hvplug code. */
export class BareJsonRpc {
  private readonly child: Child;
  private readonly connection: MessageConnection;

  constructor(bundle: string) {
    this.child = spawnHelper(bundle);
    this.connection = createMessageConnection(new StreamMessageReader(this.child.stdout), new StreamMessageWriter(this.child.stdin));
    this.connection.listen();
  }

  readonly call: Call = () => this.connection.sendRequest(METHOD, { vmId: VM_ID });

  async close(): Promise<void> {
    this.connection.dispose();
    await stop(this.child);
  }
}

/** The quiet logger every bench host uses: the bench measures calls, not log output. */
export const silentLogger = (): pino.Logger => pino({ level: 'silent' });

/**
 * The whole hvplug path: PluginHost → ShimVm.check() → invoke (validate → capability gate → call → validate
 * result, record tracking) → PluginClient → plugin process (SDK dispatch, params validation) and back.
 */
export class ShimPath {
  private constructor(
    readonly host: PluginHost,
    readonly hv: ShimHypervisor,
    readonly vm: ShimVm,
    /** The plugin process's pid. */
    readonly pid: number,
  ) {}

  static async start(plugin: string, dir: string): Promise<ShimPath> {
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      logger: silentLogger(),
      plugins: [{ name: 'noop', command: plugin }],
    });
    let pid = -1;
    host.on('plugin-started', (e) => (pid = e.pid ?? -1));
    const hv = await host.hypervisor('noop');
    const vm = await hv.createVm({ vmId: VM_ID, config: {} });
    return new ShimPath(host, hv, vm, pid);
  }

  readonly call: Call = () => this.vm.check();

  /** A session-scoped call (no VM, no SDK params parsing): the lightest thing the shim can send. */
  readonly ping: Call = () => this.hv.invoke('health/ping', {});

  close(): Promise<void> {
    return this.host.close();
  }
}
