import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { ErrorCode, sessionMethod } from 'hvplug/protocol';
// The transport's modules themselves, not hvplug/transport: its index also holds the vscode-jsonrpc reader and writer of the daemon's API.
import { formatAddress, parseAddress, type PluginAddress } from '../transport/address.js';
import { encodeFrame, FrameDecoder } from '../transport/framing.js';
import { listenSocket, type ListeningSocket } from '../transport/socket.js';

/**
 * A plugin that listens for its host instead of being spawned by it: `--listen unix:<path>` or
 * `--listen tls://<host>:<port>` with mutual TLS. One host at a time; the plugin (and what it runs) outlives
 * each host's connection.
 */
export interface ListenOptions {
  /** unix:<path> or tls://<host>:<port> (plaintext TCP is refused). */
  address: string;
  /** PEM files for tls://: the plugin's certificate and key, and the CA that signs the hosts' certificates. */
  cert?: string;
  key?: string;
  clientCa?: string;
  /** The plugin's own directories, used instead of the host's (which are paths on the host's machine). */
  stateDir?: string;
  runtimeDir?: string;
  /**
   * A host connection nothing has come in on for this long is taken as gone when another host connects (default
   * DEFAULT_HOST_SILENCE_MS): after a network cut, the plugin may never hear the old connection end, and the
   * host coming back must not be refused for being there already. A live host pings far more often.
   */
  hostSilenceMs?: number;
}

/** Three of a host's default 5 s health pings. */
export const DEFAULT_HOST_SILENCE_MS = 15_000;
/** How often the plugin looks whether its host's connection brought anything in. */
const HEARD_CHECK_MS = 1_000;
/** How long a host's session has to wind down (its shutdown hook) before the next host is served anyway. */
const SESSION_END_WAIT_MS = 5_000;

/** A mistake on the plugin's command line: the process says it and ends with status 2, as a CLI's would. */
export class UsageError extends Error {
  override readonly name: string = 'UsageError';
}

export class ListenUsageError extends UsageError {
  override readonly name = 'ListenUsageError';
}

const LISTEN_FLAGS = {
  listen: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  'client-ca': { type: 'string' },
  'state-dir': { type: 'string' },
  'runtime-dir': { type: 'string' },
  'host-silence-ms': { type: 'string' },
} as const;

/** The values of a plugin's own flags (ServeOptions.flags), by name without the dashes; absent when not given. */
export type FlagValues = Readonly<Record<string, string | undefined>>;

/** What a plugin's command line says: where to listen (undefined: stdio), and its own flags' values. */
export interface CommandLine {
  listen: ListenOptions | undefined;
  flags: FlagValues;
}

/**
 * Parses a plugin's arguments: the SDK's listen flags and `pluginFlags` (names without dashes, each taking a value).
 * Strict once there is anything to parse (a plugin's own flags, or --listen): a misspelled flag is an error, never
 * ignored. A plugin without flags of its own serving on stdio ignores its arguments, as it always did.
 */
export function parseCommandLine(argv: readonly string[], pluginFlags: readonly string[] = []): CommandLine {
  const listening = argv.some((a) => a === '--listen' || a.startsWith('--listen='));
  if (!listening && pluginFlags.length === 0) return { listen: undefined, flags: {} };
  const clash = pluginFlags.find((f) => f in LISTEN_FLAGS);
  if (clash !== undefined) throw new Error(`the plugin's flag --${clash} is one of the SDK's listen flags`);
  const options = { ...LISTEN_FLAGS, ...Object.fromEntries(pluginFlags.map((f) => [f, { type: 'string' as const }])) };
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new ListenUsageError((err as Error).message);
  }
  const text = (name: string): string | undefined => (typeof values[name] === 'string' ? values[name] : undefined);
  const flags = Object.fromEntries(pluginFlags.map((f) => [f, text(f)]));
  if (!listening) {
    const stray = Object.keys(LISTEN_FLAGS).filter((f) => values[f] !== undefined);
    if (stray.length) throw new ListenUsageError(`${stray.map((f) => `--${f}`).join(', ')}: for a plugin started with --listen; this one serves its host on stdio`);
    return { listen: undefined, flags };
  }
  return { listen: listenOptionsOf(text), flags };
}

/** The listen options of a plugin's command line; undefined when it has no --listen (it then serves on stdio). */
export function listenOptionsFromArgv(argv: readonly string[]): ListenOptions | undefined {
  return parseCommandLine(argv).listen;
}

function listenOptionsOf(text: (name: string) => string | undefined): ListenOptions {
  const address = text('listen') as string;
  let addr: PluginAddress;
  try {
    addr = parseAddress(address);
  } catch (err) {
    throw new ListenUsageError(`--listen ${(err as Error).message}`);
  }
  const tlsFlags = { cert: text('cert'), key: text('key'), clientCa: text('client-ca') };
  if (addr.kind === 'tls') {
    const missing = Object.entries({ '--cert': tlsFlags.cert, '--key': tlsFlags.key, '--client-ca': tlsFlags.clientCa }).filter(([, v]) => v === undefined);
    if (missing.length) throw new ListenUsageError(`--listen ${address} needs ${missing.map(([k]) => k).join(', ')} (mutual TLS)`);
  } else if (tlsFlags.cert ?? tlsFlags.key ?? tlsFlags.clientCa) {
    throw new ListenUsageError('--cert, --key and --client-ca are for tls:// addresses; a unix socket is guarded by its file mode');
  }
  let hostSilenceMs: number | undefined;
  const silence = text('host-silence-ms');
  if (silence !== undefined) {
    hostSilenceMs = Number(silence);
    if (!/^\d{1,9}$/.test(silence) || hostSilenceMs < 1) throw new ListenUsageError(`--host-silence-ms ${silence}: expected a whole number of milliseconds, at least 1`);
  }
  return { address, ...tlsFlags, stateDir: text('state-dir'), runtimeDir: text('runtime-dir'), ...(hostSilenceMs === undefined ? {} : { hostSilenceMs }) };
}

export interface Listening {
  /** The address listened on, a port of 0 filled in. */
  readonly address: string;
  /** Stops listening and cuts the host's connection, if there is one. */
  close(): Promise<void>;
}

export interface HostConnection {
  /** Resolves when the host's session ended (goodbye and exit, the connection lost, a protocol error). */
  closed: Promise<void>;
}

export interface ListenHooks {
  /** Serves one host over the socket. */
  serve(socket: Socket): HostConnection;
  note(message: string): void;
}

/** A second host's first message is read to answer it; it is an initialize, far below this. */
const MAX_REFUSED_MESSAGE_BYTES = 64 * 1024;
/** How long a refused host has to send its first message before it is just cut. */
const REFUSAL_WAIT_MS = 5_000;

/**
 * Tells a host why it is turned away (another host is served, its certificate was refused): its first request
 * is answered with an error saying so, then the connection ends. Nothing else it sends is looked at.
 */
function refuse(socket: Socket, error: { code: number; message: string; data: Record<string, string> }): void {
  const decoder = new FrameDecoder(MAX_REFUSED_MESSAGE_BYTES);
  const timer = setTimeout(() => socket.destroy(), REFUSAL_WAIT_MS);
  socket.on('error', () => undefined);
  socket.on('close', () => clearTimeout(timer));
  socket.on('data', (chunk: Buffer) => {
    let id: unknown;
    try {
      const [first] = decoder.push(chunk);
      if (first === undefined) return;
      id = (JSON.parse(first.toString('utf8')) as { id?: unknown }).id;
    } catch {
      socket.destroy();
      return;
    }
    if (typeof id === 'number' || typeof id === 'string') socket.end(encodeFrame(JSON.stringify({ jsonrpc: '2.0', id, error })));
    else socket.destroy();
  });
}

export async function listenForHosts(plugin: string, opts: ListenOptions, hooks: ListenHooks): Promise<Listening> {
  const addr = parseAddress(opts.address);
  let material;
  if (addr.kind === 'tls') {
    const read = (flag: string, path: string | undefined): Promise<Buffer> => {
      if (path === undefined) throw new ListenUsageError(`${flag} is needed for ${opts.address}`);
      return readFile(path).catch((err: Error) => {
        throw new ListenUsageError(`${flag} ${path}: ${err.message}`);
      });
    };
    material = { cert: await read('--cert', opts.cert), key: await read('--key', opts.key), ca: await read('--client-ca', opts.clientCa) };
  }
  const silenceMs = opts.hostSilenceMs ?? DEFAULT_HOST_SILENCE_MS;
  let active: { peer: string; since: string; socket: Socket; heard: number; ended: Promise<void> } | undefined;
  const listening: ListeningSocket = await listenSocket(addr, material, {
    connection: (socket, peer) => {
      let after: Promise<void> = Promise.resolve();
      if (active && Date.now() - active.heard > silenceMs) {
        // Its host would have pinged: the connection is dead, and this may well be that host back. The old session
        // winds down (its shutdown hook) before the new one begins, so that one cannot undo the other's re-attach.
        hooks.note(`${active.peer}: nothing heard for ${Math.round((Date.now() - active.heard) / 1000)} s, taken as gone; serving ${peer}`);
        const old = active;
        active = undefined;
        old.socket.destroy();
        after = Promise.race([old.ended, new Promise<void>((r) => setTimeout(r, SESSION_END_WAIT_MS).unref())]);
      }
      if (active) {
        hooks.note(`refused ${peer}: already serving ${active.peer}`);
        const served = `${active.peer}, connected since ${active.since}`;
        refuse(socket, {
          code: ErrorCode.ResourceExhausted,
          message: `plugin ${plugin} already serves a host: ${served}; it serves one host at a time`,
          data: { method: sessionMethod('handshake'), reason: `already serves ${served}` },
        });
        return;
      }
      let endSession: () => void = () => undefined;
      const current = { peer, since: new Date().toISOString(), socket, heard: Date.now(), ended: new Promise<void>((r) => (endSession = r)) };
      active = current;
      hooks.note(`host connected: ${peer}`);
      socket.on('error', () => undefined);
      // Sampled rather than a 'data' listener, which would set the socket flowing before the session reads it.
      let bytesSeen = socket.bytesRead;
      const heardCheck = setInterval(() => {
        if (socket.bytesRead === bytesSeen) return;
        bytesSeen = socket.bytesRead;
        current.heard = Date.now();
      }, HEARD_CHECK_MS).unref();
      // One end for both ways out: the session ending (exit, EOF, protocol error) or the socket closing.
      const release = (): void => {
        clearInterval(heardCheck);
        if (active !== current) return;
        active = undefined;
        socket.destroy();
        hooks.note(`host gone: ${peer}`);
      };
      socket.once('close', release);
      void after.then(() => {
        if (socket.destroyed) {
          endSession();
          return;
        }
        void hooks.serve(socket).closed.then(() => {
          endSession();
          // What the session still had to say (its last answers) leaves before the connection goes.
          socket.end(release);
        });
      });
    },
    refused: (reason, socket) => {
      hooks.note(`refused a connection: ${reason}`);
      if (socket) refuse(socket, { code: ErrorCode.InvalidRequest, message: `plugin ${plugin} refused the connection: ${reason}`, data: {} });
    },
  });
  return {
    address: formatAddress(listening.address),
    close: async () => {
      active?.socket.destroy();
      await listening.close();
    },
  };
}
