import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as NetModule from 'node:net';
import type * as StreamModule from 'node:stream';
import { PROTOCOL_VERSIONS, sessionMethod, type MethodName } from 'hvplug/protocol';
// The codec itself, not hvplug/transport: its index also holds the vscode-jsonrpc reader and writer of the daemon's API.
import { encodeFrame, FrameDecoder } from '../transport/framing.js';
import type { PluginDefinition, ServedPlugin, ServeOptions } from './serve.js';

/**
 * A session played against a plugin while its startup snapshot is built (ServeOptions.rehearsal). V8 keeps in
 * the snapshot the bytecode of every function that has run, and the code zod generates for a schema the first
 * time it parses (the handshake's, each call's params): what the rehearsal ran is not compiled again at each
 * start. Nothing of it stays: the definition is a fresh one, its directories are a scratch directory, removed
 * after, and all it made is dropped before the snapshot is taken.
 */
export interface Rehearsal {
  /**
   * A definition as fresh as the one served, made for the rehearsal and dropped after it. Its calls must leave
   * nothing that outlives them (a timer, a child process, a module-level cache of the host's state, which would
   * be in the snapshot): creating a VM that is never started does not.
   */
  definition: () => PluginDefinition;
  /** The calls after the handshake, in order, each answered before the next is sent; each must succeed. */
  calls?: readonly { method: MethodName; params: Record<string, unknown> }[];
}

/** How the rehearsal is served: as servePlugin serves the host, over the given streams. */
export type ServeStreams = (def: PluginDefinition, opts: Required<Pick<ServeOptions, 'input' | 'output' | 'exitProcess'>>) => ServedPlugin;

/** A rehearsal that does not end by then has a call that never answers: the snapshot build fails rather than hang. */
const REHEARSAL_TIMEOUT_MS = 30_000;

/** What the SDK rehearses for a plugin that gives no rehearsal: the handshake, with no hook of the plugin's. */
const HANDSHAKE_ONLY: PluginDefinition = { info: { name: 'rehearsal', version: '0', vendor: 'hvplug' }, capabilities: {}, handlers: {} };

/**
 * node's builtins, taken when the rehearsal runs (in the snapshot's builder only) rather than imported: a process that
 * imports the SDK without building a snapshot does not load them for this. Undefined before Node 20.16.
 */
function builtin<T>(id: string): T | undefined {
  const get = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  return get?.(id) as T | undefined;
}

/**
 * Plays `rehearsal` (the handshake alone when there is none) against a fresh definition over in-memory streams, with
 * initialize's directories in a scratch directory. Resolves when every call is answered; rejects on the first error
 * answered, or after REHEARSAL_TIMEOUT_MS.
 */
export async function rehearse(serve: ServeStreams, rehearsal: Rehearsal | undefined): Promise<void> {
  const stream = builtin<typeof StreamModule>('node:stream');
  const net = builtin<typeof NetModule>('node:net');
  if (!stream || !net) return;
  // A plugin's stdin and stdout are pipes, which node serves with node:net: loaded now, net is in the snapshot, and
  // the socket's code compiled, where each start would load it when it first reads stdin.
  new net.Socket().destroy();
  const dir = mkdtempSync(join(tmpdir(), 'hvplug-rehearsal-'));
  const input = new stream.PassThrough();
  const output = new stream.PassThrough();
  const served = serve(rehearsal?.definition() ?? HANDSHAKE_ONLY, { input, output, exitProcess: false });
  const decoder = new FrameDecoder();
  const waiting = new Map<number, { method: string; settle: (err?: Error) => void }>();
  const answered = (chunk: Buffer): void => {
    for (const body of decoder.push(chunk)) {
      const msg = JSON.parse(body.toString('utf8')) as { id?: number; error?: { message: string } };
      const call = msg.id === undefined ? undefined : waiting.get(msg.id);
      if (!call) continue;
      waiting.delete(msg.id as number);
      call.settle(msg.error && new Error(`the rehearsal's ${call.method} failed: ${msg.error.message}`));
    }
  };
  output.on('data', (chunk: Buffer) => {
    try {
      answered(chunk);
    } catch (err) {
      for (const call of waiting.values()) call.settle(err as Error);
      waiting.clear();
    }
  });
  const frame = (msg: object): Buffer => encodeFrame(JSON.stringify({ jsonrpc: '2.0', ...msg }));
  const send = (id: number, method: string, params: object, before: Buffer[] = []): Promise<void> =>
    new Promise((resolve, reject) => {
      waiting.set(id, { method, settle: (err) => (err ? reject(err) : resolve()) });
      input.write(Buffer.concat([...before, frame({ id, method, params })]));
    });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the rehearsal did not end in ${REHEARSAL_TIMEOUT_MS} ms`)), REHEARSAL_TIMEOUT_MS);
  });
  const play = async (): Promise<void> => {
    const init = { protocolVersions: [...PROTOCOL_VERSIONS], host: { name: 'hvplug-rehearsal', version: '0' }, stateDir: join(dir, 'state'), runtimeDir: join(dir, 'run'), logLevel: 'warn' };
    await send(0, sessionMethod('handshake'), init);
    // As a host does: `initialized` goes with its first call.
    let before = [frame({ method: 'initialized', params: {} })];
    for (const [n, call] of (rehearsal?.calls ?? []).entries()) {
      await send(n + 1, call.method, call.params, before);
      before = [];
    }
  };
  try {
    await Promise.race([play(), timeout]);
  } finally {
    clearTimeout(timer);
    served.close();
    input.destroy();
    output.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
