import { readFileSync, writeSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import * as z from 'zod/mini';
import { en } from 'zod/locales';
import { defaultStateDir } from '../core/paths.js';
import { ownerAlive } from '../core/proc.js';
import { isJsonValue, JSON_VALUE_MESSAGE, type Json } from '../protocol/json-value.js';
import { FrameDecoder, frameText } from '../transport/framing.js';
import { EXIT_FAILURE, EXIT_OK } from './errors.js';
import type { FastCommandName, FastFacts } from './fast-facts.js';
import { Output, type OutputSink } from './output.js';
import { safeText } from './safe-text.js';

/**
 * `hvplug pause <vm>` and `hvplug resume <vm>` through a running daemon, without the full CLI: its command table,
 * the host, the method table and zod's classic API (whose schemas are built as they load) cost a start of hvplug
 * many times what node itself costs (bench figure 9). This path loads node:net, the framing, zod/mini and the few
 * schemas of what it reads, and sends the daemon one request, hvplug/callRef: the user's reference to the VM and the
 * method. The daemon resolves the reference as the full CLI does (core/vm-ref.ts) and makes the call, so that the
 * command costs one round trip, whatever the number of VMs.
 *
 * It only ever does what the full CLI would do, with the same output: anything the daemon is not sure of before the
 * call (another API version, a VM it cannot resolve, one owned by another host, a plugin that does not advertise the
 * method) it declines, having done nothing, and so does this path with what it cannot take (another command line
 * shape, no daemon, a daemon too old for callRef): the full CLI runs it (runFast answers undefined), and gives the
 * answer or the error it always gives. Any other answer is the call's outcome, reported here in the full CLI's words.
 */

z.config(en());

/** Mirrors DaemonLockInfo (daemon/lock.ts); test/unit/cli-fast.test.ts holds the two to the same JSON Schema. */
export const FastLock = z.object({
  pid: z.int().check(z.positive()),
  startTime: z.string(),
  bootId: z.string(),
  hostname: z.string(),
  instance: z.string(),
  since: z.string(),
  socket: z.string(),
  stateDir: z.string(),
});

/** Mirrors callRef's result (daemon/api.ts), vmId as protocol's Id; its `result` is the call's, parsed below as VmResult. */
export const FastCallRef = z.object({
  vmId: z.string().check(z.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ - and start alphanumeric')),
  result: z.unknown(),
});

let vmResult: { statuses: readonly string[]; schema: ReturnType<typeof buildVmResult> } | undefined;

/**
 * Mirrors VmResult (protocol/vm.ts), which the shim parses a lifecycle call's answer with. Built once per statuses:
 * warmFast builds it into the startup snapshot, where building it costs a command nothing.
 */
export function fastVmResult(statuses: readonly string[]): ReturnType<typeof buildVmResult> {
  if (vmResult?.statuses !== statuses) vmResult = { statuses, schema: buildVmResult(statuses) };
  return vmResult.schema;
}

function buildVmResult(statuses: readonly string[]) {
  return z.object({
    status: z.enum(statuses as [string, ...string[]]),
    state: z.optional(z.custom<Json>(isJsonValue, { error: JSON_VALUE_MESSAGE })),
  });
}

const ResponseEnvelope = z.looseObject({
  id: z.optional(z.unknown()),
  result: z.optional(z.unknown()),
  error: z.optional(z.looseObject({ code: z.number(), message: z.string(), data: z.optional(z.unknown()) })),
});

const WireData = z.looseObject({ hvplug: z.string() });
const DeclinedData = z.looseObject({ declined: z.string() });

export interface FastLine {
  command: FastCommandName;
  ref: string;
  stateDir?: string;
  json: boolean;
}

const DIR_FLAGS = ['state-dir', 'runtime-dir'] as const;

/**
 * The command lines the fast path takes: `[--state-dir D] [--runtime-dir D] pause|resume <vm> [--json]`, the global
 * options also after the command, each at most once, values given as `--flag value` or `--flag=value`. Anything else
 * (another option, a value that looks like an option, help) is the full CLI's to parse and to judge: undefined.
 */
export function parseFastLine(argv: readonly string[], commands: readonly string[]): FastLine | undefined {
  const dirs: Partial<Record<(typeof DIR_FLAGS)[number], string>> = {};
  let command: FastCommandName | undefined;
  let ref: string | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      if (name === 'json' && eq < 0 && command !== undefined && !json) {
        json = true;
        continue;
      }
      const dir = DIR_FLAGS.find((f) => f === name);
      if (dir === undefined || dirs[dir] !== undefined) return undefined;
      const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
      if (value === undefined || value === '' || value.startsWith('-')) return undefined;
      dirs[dir] = value;
      continue;
    }
    if (arg === '' || arg.startsWith('-')) return undefined;
    if (command === undefined) {
      if (!commands.includes(arg)) return undefined;
      command = arg as FastCommandName;
    } else if (ref === undefined) ref = arg;
    else return undefined;
  }
  if (command === undefined || ref === undefined) return undefined;
  return { command, ref, json, ...(dirs['state-dir'] !== undefined ? { stateDir: resolve(dirs['state-dir']) } : {}) };
}

/** The daemon's lock (daemon.json), when it names a live process; undefined otherwise, as liveDaemon answers. */
function liveLock(stateDir: string, facts: FastFacts): z.output<typeof FastLock> | undefined {
  let text: string;
  try {
    // Read synchronously: the first asynchronous file call starts libuv's thread pool, milliseconds of a command
    // that otherwise needs no thread (a unix socket connects without one).
    text = readFileSync(join(stateDir, facts.lockFile), 'utf8');
  } catch {
    return undefined;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  const lock = FastLock.safeParse(raw);
  return lock.success && ownerAlive(lock.data) ? lock.data : undefined;
}

type Answer = { kind: 'result'; value: unknown } | { kind: 'error'; code: number; message: string; data: unknown } | { kind: 'gone' } | { kind: 'timeout'; ms: number };

/** One connection to the daemon: requests by id, answers by id; what else it sends (notifications) is not for us. */
class FastWire {
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, (a: Answer) => void>();
  private next = 0;
  private closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly facts: FastFacts,
  ) {
    this.decoder = new FrameDecoder(facts.maxAnswerBytes);
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const body of this.decoder.push(chunk)) this.onMessage(body);
      } catch {
        // Bytes that are not a frame, or a frame over the cap: as the full CLI's reader, the connection is done.
        this.close();
      }
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  static open(path: string, facts: FastFacts): Promise<FastWire | undefined> {
    return new Promise((done) => {
      const socket = connect(path);
      socket.once('error', () => done(undefined));
      socket.once('connect', () => done(new FastWire(socket, facts)));
    });
  }

  private onMessage(body: Buffer): void {
    let raw: unknown;
    try {
      raw = JSON.parse(body.toString('utf8'));
    } catch {
      this.close();
      return;
    }
    const msg = ResponseEnvelope.safeParse(raw);
    if (!msg.success || typeof msg.data.id !== 'number') return;
    const answer = this.pending.get(msg.data.id);
    if (!answer) return;
    this.pending.delete(msg.data.id);
    const err = msg.data.error;
    answer(err ? { kind: 'error', code: err.code, message: err.message, data: err.data } : { kind: 'result', value: msg.data.result });
  }

  /** A request with the full CLI's deadline (the call's own, plus the margin the daemon's client gives it). */
  request(method: string, params: object, timeoutMs: number | null): Promise<Answer> {
    if (this.closed) return Promise.resolve({ kind: 'gone' });
    const id = this.next++;
    return new Promise((done) => {
      let timer: NodeJS.Timeout | undefined;
      this.pending.set(id, (a) => {
        clearTimeout(timer);
        done(a);
      });
      if (timeoutMs !== null) {
        const ms = timeoutMs + this.facts.deadlineMarginMs;
        timer = setTimeout(() => {
          this.pending.delete(id);
          // As vscode-jsonrpc cancels a request (the LSP's notification, which the daemon's connection honours).
          this.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id } });
          done({ kind: 'timeout', ms });
        }, ms);
      }
      this.send({ jsonrpc: '2.0', id, method, params });
    });
  }

  private send(message: object): void {
    try {
      this.socket.write(frameText(JSON.stringify(message), this.facts.maxRequestBytes));
    } catch {
      this.close();
    }
  }

  /**
   * Done with the connection. `leave`: the process is about to exit, which closes it; Socket's destroy would first
   * make process.stderr (a net.Socket of its own over a pipe) only to tell the socket from it, about a millisecond of
   * a command (bench figure 9). The socket then no longer holds the process.
   */
  close(leave = false): void {
    if (this.closed) return;
    this.closed = true;
    if (leave) this.socket.unref();
    else this.socket.destroy();
    for (const answer of this.pending.values()) answer({ kind: 'gone' });
    this.pending.clear();
  }
}

/** Whether fail() has written to process.stderr: exitFast then waits for what of it a full pipe still holds. */
let stderrWritten = false;

/** The full CLI's last word on an error (cli.ts report()), for the errors a call through the daemon can end in. */
function fail(message: string, internal = false): number {
  const text = internal
    ? `internal error: ${message}${process.env.HVPLUG_DEBUG ? `\n${new Error(message).stack ?? ''}` : ' (set HVPLUG_DEBUG=1 for a stack trace)'}`
    : message;
  stderrWritten = true;
  process.stderr.write(`${safeText(`hvplug: ${text}`)}\n`);
  return EXIT_FAILURE;
}

/** Standard output as the fast path's process writes it: `queued` while bytes wait in process.stdout for the reader. */
export interface FastStdout extends OutputSink {
  readonly queued: boolean;
}

/**
 * Standard output written with write(2) on its descriptor. process.stdout over a pipe is a net.Socket, whose making
 * and first write cost a command more than a millisecond (bench figure 9); one line needs none of it. The descriptor
 * is used as inherited, blocking as a shell or node's spawn hands it over; one found non-blocking and full (EAGAIN)
 * takes the rest through process.stdout after all, which waits for the reader. A reader gone (EPIPE) drops the
 * output, as the full CLI's process.stdout does.
 */
export function stdoutSink(): FastStdout {
  let writable = true;
  let streamed = false;
  return {
    get writable() {
      return writable;
    },
    get queued() {
      return streamed && process.stdout.writableLength > 0;
    },
    write(text: string) {
      const bytes = Buffer.from(text);
      let done = 0;
      try {
        while (done < bytes.length) done += writeSync(1, bytes, done);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
          writable = false;
          return;
        }
        streamed = true;
        process.stdout.on('error', () => undefined);
        process.stdout.write(bytes.subarray(done));
      }
    },
  };
}

/**
 * Ends the snapshot's process with `code` (scripts/bundle-cli.mjs). At once when all it wrote has gone out: node's
 * orderly exit after the event loop empties tears the environment and the heap down, for nothing here (bench
 * figure 9). Output still queued (a pipe found full) keeps the process until it is written, as before.
 */
export function exitFast(code: number, out: FastStdout): void {
  process.exitCode = code;
  if (out.queued || (stderrWritten && process.stderr.writableLength > 0)) return;
  process.exit(code);
}

/**
 * Runs `argv` when it is a fast command line and a daemon serves the state directory: the exit code. Undefined when
 * the full CLI should run it instead (nothing has been changed then). The command's output goes to `out`. `exiting`:
 * the process exits when this ends (exitFast), and its exit closes the connection to the daemon.
 */
export async function runFast(argv: readonly string[], facts: FastFacts, out: OutputSink = process.stdout, exiting = false): Promise<number | undefined> {
  const line = parseFastLine(argv, Object.keys(facts.commands));
  if (!line) return undefined;
  const lock = liveLock(line.stateDir ?? defaultStateDir(), facts);
  if (!lock) return undefined;
  const wire = await FastWire.open(lock.socket, facts);
  if (!wire) return undefined;
  try {
    const spec = facts.commands[line.command];
    // One round trip: the daemon resolves the reference and makes the call, or declines (nothing done) where the full
    // CLI would word or do it otherwise. The deadline covers its own work (records, a re-attach) and the call's.
    const timeoutMs = spec.timeoutMs === null ? null : facts.ownCallTimeoutMs + spec.timeoutMs;
    const a = await wire.request(facts.callRef, { apiVersion: facts.apiVersion, ref: line.ref, method: spec.method }, timeoutMs);
    switch (a.kind) {
      case 'gone':
        return fail(`the hvplug daemon (pid ${lock.pid}) closed the connection; ${spec.method} got no answer`);
      case 'timeout':
        return fail(`${spec.method} through the hvplug daemon (pid ${lock.pid}) got no answer within ${a.ms} ms`);
      case 'error': {
        // Declined: nothing was done, the full CLI takes it. So with a daemon too old to serve callRef (its method
        // unknown, answered by the JSON-RPC layer without hvplug's data; a plugin's MethodNotFound carries it).
        if (a.code === facts.declinedCode && DeclinedData.safeParse(a.data).success) return undefined;
        if (a.code === facts.methodNotFoundCode && !WireData.safeParse(a.data).success) return undefined;
        // As fromResponseError: an hvplug error, or the protocol's code; an InternalError without hvplug's data is a bug.
        const data = WireData.safeParse(a.data);
        const ours = data.success && facts.hvplugCodes.includes(data.data.hvplug);
        return fail(a.message, !ours && a.code === facts.internalErrorCode);
      }
      case 'result': {
        const answer = FastCallRef.safeParse(a.value);
        if (!answer.success) return fail(`the hvplug daemon (pid ${lock.pid}) answered ${facts.callRef} with a malformed result`);
        const vmId = answer.data.vmId;
        const result = fastVmResult(facts.statuses).safeParse(answer.data.result);
        if (!result.success) {
          const issues = result.error.issues.map((i) => `${i.path.length ? i.path.map(String).join('.') : '(root)'}: ${i.message}`).join('; ');
          return fail(`plugin answered ${spec.method} with a malformed result: ${issues}`);
        }
        new Output(line.json, out).document({ id: vmId, status: result.data.status }, () => vmId);
        return EXIT_OK;
      }
    }
  } finally {
    wire.close(exiting);
  }
}

/**
 * Runs, at the startup snapshot's build (scripts/bundle-cli.mjs), what a command runs before and after its one
 * request, on made-up values and with no file or socket: the schemas get built and the functions compiled there, in
 * the snapshot, not in each command. Nothing of it is kept but what a command would build the same.
 */
export function warmFast(facts: FastFacts): void {
  const line = parseFastLine(['--state-dir=/', 'pause', 'vm', '--json'], Object.keys(facts.commands));
  FastLock.safeParse({ pid: 1, startTime: '', bootId: '', hostname: '', instance: '', since: '', socket: '', stateDir: line?.stateDir ?? '' });
  const body = frameText(JSON.stringify({ jsonrpc: '2.0', id: 0, result: { vmId: 'vm', result: { status: facts.statuses[0], state: { a: [1] } } } }), facts.maxRequestBytes);
  for (const frame of new FrameDecoder(facts.maxAnswerBytes).push(Buffer.from(body))) {
    const msg = ResponseEnvelope.safeParse(JSON.parse(frame.toString('utf8')));
    const answer = FastCallRef.safeParse(msg.data?.result);
    fastVmResult(facts.statuses).safeParse(answer.data?.result);
    fastVmResult(facts.statuses).safeParse({ status: 'none' });
    WireData.safeParse({});
    DeclinedData.safeParse({});
  }
}
