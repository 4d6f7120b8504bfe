// The host's read path, in-process: the plugin's stdout is a PassThrough that the fuzzer writes into, read as
// PluginClient.start reads a child's stdout (FramedReader → notification tap → vscode-jsonrpc with
// maxParallelism), calls made through a ShimHypervisor, as the host makes them.
import { PassThrough } from 'node:stream';
import { createMessageConnection, Message, ResponseError, type MessageConnection } from 'vscode-jsonrpc/node';
import { FramedReader, FramedWriter, InitializeResult, tapReader, VmConfig } from 'hvplug/protocol';
import { fromWireError, HvplugError, ProtocolError, ShimHypervisor, type ChannelCallOptions, type PluginChannel } from 'hvplug';
import { chunked, FUZZ_MAX_MESSAGE_BYTES, FUZZ_VM_ID, verdict, type FuzzInput } from './frames.js';
import { describe, turns, within, type CrashWatch } from './watch.js';

/** The requests the host has outstanding when the bytes arrive: ids 0, 1, 2 in this order. */
export const HOST_CALLS = ['vm/start', 'vm/info', 'vm/stats'] as const;
export const HOST_PENDING_IDS = HOST_CALLS.map((_, i) => i);

const INFO = InitializeResult.parse({
  protocolVersion: '1.0.0',
  plugin: { name: 'fuzz', version: '1.0.0', vendor: 'hvplug fuzz' },
  capabilities: { methods: [...HOST_CALLS] },
});

type Outcome = { kind: 'resolved' } | { kind: 'typed'; err: HvplugError } | { kind: 'untyped'; err: unknown };

/**
 * The PluginChannel PluginClient is, over one connection: a ResponseError becomes the typed error
 * fromWireError makes of it, any other rejection passes as it is (PluginClient.toError), and a stream error
 * or close fails every outstanding call with the client's fatal error (PluginClient.failAll).
 */
class WireChannel implements PluginChannel {
  readonly info = INFO;
  readonly listeners = new Set<(method: string, params: unknown) => void>();
  private readonly pending = new Set<(err: Error) => void>();
  fatal: HvplugError | undefined;
  connection!: MessageConnection;

  call(method: string, params: unknown, _opts: ChannelCallOptions): Promise<unknown> {
    if (this.fatal) return Promise.reject(this.fatal);
    return new Promise((resolve, reject) => {
      const fail = (err: Error): void => {
        this.pending.delete(fail);
        reject(err);
      };
      this.pending.add(fail);
      this.connection.sendRequest(method, params).then(
        (value) => {
          this.pending.delete(fail);
          resolve(value);
        },
        (err: unknown) => fail(err instanceof ResponseError ? fromWireError(method, err.code, err.message, err.data) : (this.fatal ?? (err as Error))),
      );
    });
  }

  onNotification(listener: (method: string, params: unknown) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  failAll(err: HvplugError): void {
    this.fatal ??= err;
    for (const fail of [...this.pending]) fail(this.fatal);
  }
}

export interface HostCaseReport {
  outcomes: (Outcome | undefined)[];
  /** The connection reported a broken stream. */
  streamError: boolean;
  crashes: string[];
  requestsSent: number;
}

/** One case: a fresh pipeline, the calls made, the bytes written, the plugin's stdout ended. */
export async function runHostCase(input: FuzzInput, watch: CrashWatch): Promise<HostCaseReport> {
  const mark = watch.crashes.length;
  const stdout = new PassThrough();
  const stdin = new PassThrough();
  let requestsSent = 0;
  stdin.on('data', () => void requestsSent++);
  const channel = new WireChannel();
  const reader = tapReader(new FramedReader(stdout, FUZZ_MAX_MESSAGE_BYTES), (msg) => {
    if (!Message.isNotification(msg)) return true;
    for (const l of channel.listeners) {
      try {
        l(msg.method, msg.params);
      } catch (err) {
        watch.crashes.push(`a notification listener threw (PluginClient logs it): ${describe(err)}`);
      }
    }
    return false;
  });
  const writer = new FramedWriter(stdin, FUZZ_MAX_MESSAGE_BYTES);
  const connection = createMessageConnection(reader, writer, undefined, { maxParallelism: Number.MAX_SAFE_INTEGER });
  channel.connection = connection;
  let streamError = false;
  connection.onError(([err]) => {
    streamError = true;
    channel.failAll(new ProtocolError(`plugin fuzz broke the protocol on stdout: ${err.message}`));
  });
  connection.listen();

  const shim = new ShimHypervisor(channel, {
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
  // vscode-jsonrpc dispatches what it queued one message per turn: enough turns for every message written.
  await turns(input.pieces.length * 4 + 20, settled);
  // The plugin exits: its stdout ends and the client fails what is left (PluginClient's exit handler).
  stdout.end();
  await turns(5);
  channel.failAll(new HvplugError('plugin fuzz exited', 'PluginExited'));
  await within(1_000, settled);
  connection.dispose();
  stdin.destroy();
  return { outcomes, streamError, crashes: watch.since(mark), requestsSent };
}

/** What is wrong with a case's outcome, or undefined. */
export function hostCaseProblem(input: FuzzInput, r: HostCaseReport): string | undefined {
  if (r.crashes.length) return r.crashes.join('\n');
  if (r.requestsSent === 0) return 'the calls were never sent';
  for (const [i, o] of r.outcomes.entries()) {
    if (!o) return `call ${HOST_CALLS[i]} (id ${i}) never settled`;
    if (o.kind === 'untyped') return `call ${HOST_CALLS[i]} (id ${i}) rejected with an untyped error: ${describe(o.err)}`;
  }
  const v = verdict(input.pieces);
  if (v === 'violation' && !r.streamError) return 'the stream broke the framing, but the reader accepted it';
  if (v === 'ok' && r.streamError) return 'a well-framed stream was reported as broken';
  return undefined;
}
