import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { ENV_ALLOW_LIST, type PluginSpec } from 'hvplug';
import { encodeFrame, FrameDecoder } from 'hvplug/transport';
import { SkipCheck } from './check.js';
import type { Direction } from './wire-monitor.js';

/**
 * A plugin process spoken to byte by byte, for what the host client cannot do on purpose: end stdin
 * without shutdown or exit, as a host that dies does.
 */
export class RawPlugin {
  private readonly decoder = new FrameDecoder();
  private readonly replies = new Map<number, (msg: Record<string, unknown>) => void>();
  private nextId = 1;
  readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly trace: (direction: Direction, message: unknown) => void,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.stdin.on('error', () => undefined);
    child.stderr.resume();
    child.stdout.on('data', (chunk: Buffer) => {
      let bodies: Buffer[];
      try {
        bodies = this.decoder.push(chunk);
      } catch {
        // Stray bytes are the stdout check's business; this probe only needs the handshake.
        return;
      }
      for (const body of bodies) {
        const msg = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
        trace('receive', msg);
        if (typeof msg.id === 'number') this.replies.get(msg.id)?.(msg);
      }
    });
  }

  static start(spec: PluginSpec, trace: (direction: Direction, message: unknown) => void): RawPlugin {
    const env: Record<string, string> = {};
    for (const name of [...ENV_ALLOW_LIST, ...spec.envPassthrough]) {
      const v = process.env[name];
      if (v !== undefined) env[name] = v;
    }
    // Its own process group, like the host's children, so that a kill takes its helpers too.
    if (spec.command === undefined) throw new SkipCheck(`the plugin listens at ${spec.connect}: it is connected to, not spawned, so it has no stdin of the suite's`);
    const child = spawn(spec.command, spec.args, { env: { ...env, ...spec.env }, stdio: 'pipe', detached: true });
    return new RawPlugin(child, trace);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  send(message: Record<string, unknown>): void {
    const full = { jsonrpc: '2.0', ...message };
    this.trace('send', full);
    this.child.stdin.write(encodeFrame(JSON.stringify(full)));
  }

  request(method: string, params: unknown, timeoutMs: number): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${method} got no answer within ${timeoutMs} ms`)), timeoutMs);
      this.child.once('exit', (code, signal) => reject(new Error(`the plugin exited (${signal ?? code}) before answering ${method}`)));
      this.replies.set(id, (msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
      this.send({ id, method, params });
    });
  }

  /** What a host that dies leaves the plugin: end of input, nothing else. */
  endInput(): void {
    this.child.stdin.end();
  }

  kill(): void {
    try {
      if (this.child.pid) process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      this.child.kill('SIGKILL');
    }
  }
}
