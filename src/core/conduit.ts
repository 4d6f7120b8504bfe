import type { ChildProcessByStdio } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { HvplugError, PluginExitedError, PluginSpawnError, PluginUnreachableError } from '../errors/index.js';
import { formatAddress, parseAddress } from '../transport/address.js';
import type { TlsFiles } from './plugin-spec.js';

/**
 * What a PluginClient speaks through: the stdio of a child it spawned, or a socket to a plugin that listens.
 * The framing, the handshake and every call are the same over both; what differs is here: how the plugin is
 * reached, how it is forced to end, and what its end means (an exit, or a lost connection).
 */
export interface Conduit {
  /** What the plugin sends: its stdout, or the socket. */
  readonly fromPlugin: Readable;
  /** What the plugin reads: its stdin, or the socket. */
  readonly toPlugin: Writable;
  /** The plugin's log lines, when the host has them (a spawned plugin's stderr). */
  readonly stderr: Readable | undefined;
  /** The process, when the host spawned it; a listening plugin's is not the host's to signal. */
  readonly pid: number | undefined;
  /** Where the plugin is, for messages: `pid 123`, `tls://node-b:7443`. */
  readonly where: string;
  /** What the plugin's output is called in messages. */
  readonly outputName: string;
  /**
   * Resolves once the plugin is gone from this end (its process exited, the connection closed), with the error
   * the calls still under way fail with.
   */
  ended(context: EndContext): Promise<Ending>;
  /**
   * A spawned plugin's whole process group is signalled; a connection is cut, whatever the signal, and `reason`
   * (why the host cut it) is what the calls under way are told.
   */
  kill(signal: NodeJS.Signals, reason?: string): void;
  /** The streams let go, after the end. */
  release(): void;
}

export interface EndContext {
  plugin: string;
  stderrTail: () => string[];
  /** When in the plugin's life it ended, if that is news ("before answering initialize"). */
  when: () => string | undefined;
}

export interface Ending {
  code: number | null;
  signal: string | null;
  error: HvplugError;
}

type PluginProcess = ChildProcessByStdio<Writable, Readable, Readable>;

/** Reading on after a plugin's exit: until its stderr ends, is quiet this long, or this long in all. */
const STDERR_QUIET_MS = 100;
const STDERR_DRAIN_MAX_MS = 5_000;

function drainStderr(stderr: Readable): Promise<void> {
  return new Promise((resolve) => {
    if (stderr.readableEnded || stderr.destroyed) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(quiet);
      clearTimeout(cap);
      stderr.off('data', onData);
      stderr.off('end', done);
      stderr.off('close', done);
      resolve();
    };
    let quiet = setTimeout(done, STDERR_QUIET_MS);
    const cap = setTimeout(done, STDERR_DRAIN_MAX_MS);
    const onData = (): void => {
      clearTimeout(quiet);
      quiet = setTimeout(done, STDERR_QUIET_MS);
    };
    stderr.on('data', onData);
    stderr.once('end', done);
    stderr.once('close', done);
  });
}

class ChildConduit implements Conduit {
  readonly fromPlugin: Readable;
  readonly toPlugin: Writable;
  readonly stderr: Readable;
  readonly where: string;
  readonly outputName = 'stdout';

  constructor(
    private readonly child: PluginProcess,
    readonly pid: number,
  ) {
    this.fromPlugin = child.stdout;
    this.toPlugin = child.stdin;
    this.stderr = child.stderr;
    this.where = `pid ${pid}`;
  }

  ended(ctx: EndContext): Promise<Ending> {
    return new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        // The plugin's helpers go with it, whether it was killed or left on its own.
        this.kill('SIGKILL');
        // stderr may still hold the crash message, behind megabytes the reader caps as it goes: it is read to its end
        // while bytes keep coming, but a helper that inherited it (in a session of its own) cannot hold the exit up.
        void drainStderr(this.stderr).then(() => {
          resolve({ code, signal, error: new PluginExitedError(ctx.plugin, code, signal, ctx.stderrTail(), undefined, ctx.when()) });
        });
      });
    });
  }

  kill(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch {
      // Already gone.
    }
  }

  release(): void {
    // A process that inherited the pipes (a helper in a session of its own) must not keep the host alive.
    for (const s of [this.toPlugin, this.fromPlugin, this.stderr]) s.destroy();
  }
}

export interface SpawnRequest {
  executable: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
  plugin: string;
}

export async function spawnConduit(req: SpawnRequest): Promise<Conduit> {
  let child: PluginProcess;
  const cannot = (err: Error): PluginSpawnError => new PluginSpawnError(`plugin ${req.plugin}: cannot start ${req.executable}: ${err.message}`, { cause: err });
  // Loaded here, not at `import 'hvplug'`: with the net and dgram modules it brings, ~1 MiB resident.
  const { spawn } = await import('node:child_process');
  try {
    // node's own spawn: the host needs pipes, a process group and the exit, nothing execa adds to them, and
    // execa's ~100 modules would cost every embedder's process ~14 MiB from its import on.
    child = spawn(req.executable, [...req.args], {
      env: req.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      // Its own process group, so a forced shutdown can take the plugin and its helpers down together.
      detached: true,
    });
  } catch (err) {
    throw cannot(err as Error);
  }
  const pid = await new Promise<number>((resolve, reject) => {
    child.once('spawn', () => resolve(child.pid as number));
    child.once('error', (err) => reject(cannot(err)));
  });
  return new ChildConduit(child, pid);
}

class SocketConduit implements Conduit {
  readonly stderr = undefined;
  readonly pid = undefined;
  readonly outputName = 'its connection';
  /** The last thing the socket reported: a TLS alert from the plugin says why it hung up. */
  private lastError: Error | undefined;

  constructor(
    private readonly socket: Socket,
    readonly where: string,
  ) {
    socket.on('error', (err) => {
      // The first error is the cause; a later one (the EPROTO of a write after it) would hide it.
      this.lastError ??= err;
      // A TLS error after the handshake (a record that fails authentication) does not close the socket: node
      // leaves it open and unreadable, and calls under way would wait out their deadlines for an answer that
      // cannot come. Any error ends the connection here, so that they fail now and the host reconnects.
      socket.destroy();
    });
    // Calls under way hear of a dead peer within the health deadline; this only keeps a silent NAT from
    // dropping an idle connection.
    socket.setKeepAlive(true, 10_000);
    socket.setNoDelay(true);
  }

  get fromPlugin(): Readable {
    return this.socket;
  }

  get toPlugin(): Writable {
    return this.socket;
  }

  ended(ctx: EndContext): Promise<Ending> {
    return new Promise((resolve) => {
      const done = (): void => {
        const reason = this.lastError ? this.lastError.message : `the connection was closed${ctx.when() ? ` ${ctx.when()}` : ''}`;
        resolve({ code: null, signal: null, error: new PluginUnreachableError(ctx.plugin, this.where, reason) });
      };
      if (this.socket.closed) done();
      else this.socket.once('close', done);
    });
  }

  kill(_signal: NodeJS.Signals, reason?: string): void {
    if (reason !== undefined && !this.socket.closed) this.lastError ??= new Error(reason);
    this.socket.destroy();
  }

  release(): void {
    this.socket.destroy();
  }
}

export interface ConnectRequest {
  plugin: string;
  address: string;
  tls: TlsFiles | undefined;
  timeoutMs: number;
}

/** Connects to a listening plugin; the certificate files are read now, so that renewed ones count from here on. */
export async function connectConduit(req: ConnectRequest): Promise<Conduit> {
  const { connectSocket } = await import('../transport/socket.js');
  const addr = parseAddress(req.address);
  const where = formatAddress(addr);
  let material;
  if (req.tls) {
    const read = (what: string, path: string): Promise<Buffer> =>
      readFile(path).catch((err: Error) => {
        throw new HvplugError(`plugin ${req.plugin}: cannot read the TLS ${what} ${path}: ${err.message}`, 'InvalidConfig');
      });
    material = { cert: await read('certificate', req.tls.cert), key: await read('key', req.tls.key), ca: await read('CA', req.tls.ca) };
  }
  try {
    return new SocketConduit(await connectSocket(addr, material, req.timeoutMs), where);
  } catch (err) {
    throw new PluginUnreachableError(req.plugin, where, (err as Error).message.replace(`${where}: `, ''));
  }
}
