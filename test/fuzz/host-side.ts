// The host's read path, in-process: the plugin's stdout is a PassThrough that the fuzzer writes into, read as
// PluginClient reads a child's stdout (FrameReader → HostRpc, the host's own JSON-RPC end), calls made through
// a ShimHypervisor, as the host makes them.
import { PassThrough } from 'node:stream';
import { InitializeResult, VmConfig } from 'hvplug/protocol';
import { FrameReader, FrameWriter, FramingError } from 'hvplug/transport';
import { HvplugError, ProtocolError, ShimHypervisor, type ChannelCallOptions, type PluginChannel } from 'hvplug';
import { HostRpc, type RpcPeer } from '../../src/core/host-rpc.js';
import type { NotificationListener } from '../../src/shim/channel.js';
import { chunked, FUZZ_MAX_MESSAGE_BYTES, FUZZ_VM_ID, verdict, type FuzzInput } from './frames.js';
import { describe, turns, within, type CrashWatch } from './watch.js';

/** The requests the host has outstanding when the bytes arrive, in this order; HostRpc numbers calls from 1. */
export const HOST_CALLS = ['vm/start', 'vm/info', 'vm/stats'] as const;
export const HOST_PENDING_IDS = HOST_CALLS.map((_, i) => i + 1);

const INFO = InitializeResult.parse({
  protocolVersion: '1.0.0',
  plugin: { name: 'fuzz', version: '1.0.0', vendor: 'hvplug fuzz' },
  capabilities: { methods: [...HOST_CALLS] },
});

/** The `origin` notifications carry (a plugin's pid). */
const ORIGIN = 1;

type Outcome = { kind: 'resolved' } | { kind: 'typed'; err: HvplugError } | { kind: 'untyped'; err: unknown };

/**
 * PluginClient without its process: a HostRpc over the pipes, notifications relayed to listeners that may not
 * throw, and a broken stream (framing, a message HostRpc calls fatal) failing every call with a ProtocolError,
 * as PluginClient.broken does. Handshake, notification budget and exit handling are left out: the real-process
 * case covers them.
 */
class WireClient implements PluginChannel, RpcPeer {
  readonly info = INFO;
  readonly rpc: HostRpc;
  private readonly listeners = new Set<NotificationListener>();
  failure: HvplugError | undefined;
  /** The stream was called broken (PluginClient.broken). */
  broke = false;

  constructor(
    writer: FrameWriter,
    private readonly watch: CrashWatch,
  ) {
    this.rpc = new HostRpc(writer, this);
  }

  call(method: string, params: unknown, opts: ChannelCallOptions): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    return this.rpc.call(method, params, opts);
  }

  onNotification(listener: NotificationListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notification(method: string, params: unknown): void {
    if (this.failure) return;
    for (const l of this.listeners) {
      try {
        l(method, params, ORIGIN);
      } catch (err) {
        this.watch.crashes.push(`a notification listener threw (PluginClient logs it): ${describe(err)}`);
      }
    }
  }

  fatal(err: ProtocolError): void {
    this.broken(err.message);
  }

  note(): void {
    // PluginClient logs these at debug level.
  }

  broken(message: string): void {
    this.broke = true;
    this.fail(new ProtocolError(message));
  }

  fail(err: HvplugError): void {
    this.failure ??= err;
    this.rpc.failAll(this.failure);
  }
}

export interface HostCaseReport {
  outcomes: (Outcome | undefined)[];
  /** The client called the stream broken (framing, or a message that is not JSON-RPC). */
  streamError: boolean;
  crashes: string[];
  requestsSent: number;
  /**
   * What HostRpc.receive threw. PluginClient catches it and fails the plugin, so it is no crash and the
   * property holds; the long run (`npm run fuzz`) lists it, since receive is meant to make a typed outcome of
   * any message itself.
   */
  receiveThrew: string[];
}

/**
 * Findings that break no property (HostRpc.receive threw, PluginClient caught it): first line → how often, and
 * the smallest input that showed it. `npm run fuzz` prints them.
 */
export const hostNotes = new Map<string, { count: number; example: FuzzInput }>();

function note(what: string, input: FuzzInput): void {
  const key = what.split('\n')[0]!.slice(0, 160);
  const size = (i: FuzzInput): number => i.pieces.reduce((n, p) => n + p.bytes.length, 0);
  const seen = hostNotes.get(key);
  if (!seen) hostNotes.set(key, { count: 1, example: input });
  else {
    seen.count++;
    if (size(input) < size(seen.example)) seen.example = input;
  }
}

/** One case: a fresh pipeline, the calls made, the bytes written, the plugin's stdout ended. */
export async function runHostCase(input: FuzzInput, watch: CrashWatch): Promise<HostCaseReport> {
  const mark = watch.crashes.length;
  const stdout = new PassThrough();
  const stdin = new PassThrough();
  let requestsSent = 0;
  stdin.on('data', () => void requestsSent++);
  const receiveThrew: string[] = [];
  const reader = new FrameReader(stdout, FUZZ_MAX_MESSAGE_BYTES);
  const client = new WireClient(new FrameWriter(stdin, FUZZ_MAX_MESSAGE_BYTES), watch);
  reader.listen({
    // As PluginClient: whatever receive throws fails the plugin with a ProtocolError, and is counted.
    message: (msg) => {
      try {
        client.rpc.receive(msg);
      } catch (err) {
        receiveThrew.push(describe(err));
        note(`HostRpc.receive threw: ${describe(err)}`, input);
        client.broken(`plugin fuzz: a message it sent could not be handled: ${(err as Error).message}`);
      }
    },
    error: (err) => client.broken(`plugin fuzz broke the protocol on stdout: ${err.message}${err instanceof FramingError ? '' : ' (not a FramingError)'}`),
    close: () => undefined,
  });

  const shim = new ShimHypervisor(client, {
    onViolation: () => undefined,
    // As the host's: it persists each change (JSON) and logs, not throws, what it cannot persist.
    onVmChange: (u) =>
      Promise.resolve()
        .then(() => void JSON.stringify(u))
        .catch(() => undefined),
  });
  const vm = shim.adopt(FUZZ_VM_ID, VmConfig.parse({}), 'created');
  shim.onEvent(() => undefined);
  const outcomes: (Outcome | undefined)[] = HOST_CALLS.map(() => undefined);
  const calls = [vm.start(), vm.info(), vm.stats()];
  calls.forEach((p, i) =>
    p.then(
      () => (outcomes[i] = { kind: 'resolved' }),
      (err: unknown) => (outcomes[i] = err instanceof HvplugError ? { kind: 'typed', err } : { kind: 'untyped', err }),
    ),
  );
  const settled = (): boolean => outcomes.every((o) => o !== undefined);

  for (const chunk of chunked(input)) {
    try {
      stdout.write(chunk);
    } catch (err) {
      // From a real pipe this would have been thrown in a 'data' listener, out of any caller's reach.
      watch.crashes.push(`thrown while reading: ${describe(err)}`);
    }
  }
  // HostRpc handles each message as it is read; the shim's checks and record writes take a few turns more.
  await turns(input.pieces.length * 4 + 20, settled);
  // The plugin exits: its stdout ends and the client fails what is left (PluginClient's exit handler).
  stdout.end();
  await turns(5);
  client.fail(new HvplugError('plugin fuzz exited', 'PluginExited'));
  await within(1_000, settled);
  reader.release();
  stdin.destroy();
  return { outcomes, streamError: client.broke, crashes: watch.since(mark), requestsSent, receiveThrew };
}

/** What is wrong with a case's outcome, or undefined. */
export function hostCaseProblem(input: FuzzInput, r: HostCaseReport): string | undefined {
  if (r.crashes.length) return r.crashes.join('\n');
  if (r.requestsSent === 0) return 'the calls were never sent';
  for (const [i, o] of r.outcomes.entries()) {
    if (!o) return `call ${HOST_CALLS[i]} (id ${i}) never settled`;
    if (o.kind === 'untyped') return `call ${HOST_CALLS[i]} (id ${i}) rejected with an untyped error: ${describe(o.err)}`;
  }
  const v = verdict(input.pieces, false, true);
  if (v === 'violation' && !r.streamError) return 'the stream broke the framing or sent a body that is not JSON-RPC, but the host read on';
  if (v === 'ok' && r.streamError) return 'a well-framed stream was reported as broken';
  return undefined;
}
