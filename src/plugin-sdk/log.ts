import { writeSync } from 'node:fs';
import { format } from 'node:util';

/**
 * A plugin's logger: one JSON line per record on stderr, in pino's line format (numeric `level`, `time`, the
 * bindings, the fields, `msg`), which is what the host's plugin-log parser (src/core/plugin-log.ts) reads. The
 * SDK's own, instead of pino, because every library a plugin loads stays in its memory for its whole life and
 * in its startup snapshot (bench figure 9); a plugin that wants pino passes one (PluginDefinition.logger).
 */
export interface LogFn {
  (msg: string, ...args: unknown[]): void;
  (obj: object, msg?: string, ...args: unknown[]): void;
}

export interface Logger {
  /** trace, debug, info, warn, error, fatal or silent; the SDK sets it from the host's initialize. */
  level: string;
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
  child(bindings: Record<string, unknown>): Logger;
}

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
type LevelName = keyof typeof LEVELS;
const LEVEL_NAMES = Object.keys(LEVELS) as LevelName[];

/** The most one record may take on stderr; past it the fields are replaced by a note (the host cuts lines at 64 KiB anyway). */
export const MAX_RECORD_BYTES = 64 * 1024;

/** How long a write to a full non-blocking stderr is retried, in all, before the record is dropped. */
const WRITE_RETRY_MS = 1_000;
// Made at the first full stderr, not at load: a startup snapshot is built where SharedArrayBuffer does not exist.
let sleeper: Int32Array | undefined;

/**
 * Writes the whole line to fd 2, synchronously so that nothing is lost when the process exits right after. A
 * logger must never throw: a closed stderr (EPIPE) or one full for longer than WRITE_RETRY_MS drops the record.
 */
function writeStderr(line: string): void {
  let buf = Buffer.from(line, 'utf8');
  let waited = 0;
  while (buf.length > 0) {
    try {
      buf = buf.subarray(writeSync(2, buf));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || waited >= WRITE_RETRY_MS) return;
      Atomics.wait((sleeper ??= new Int32Array(new SharedArrayBuffer(4))), 0, 0, 10);
      waited += 10;
    }
  }
}

/** pino's `err` serializer, so that an error logged reads the same on the host: type, message, stack, own fields. */
function serializeError(err: Error): Record<string, unknown> {
  return { ...Object.fromEntries(Object.entries(err)), type: err.constructor?.name ?? err.name, message: err.message, stack: err.stack };
}

function fieldsOf(obj: object): Record<string, unknown> {
  if (obj instanceof Error) return { err: serializeError(obj) };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) out[k] = v instanceof Error ? serializeError(v) : v;
  return out;
}

function stringify(record: Record<string, unknown>): string {
  try {
    return JSON.stringify(record);
  } catch (err) {
    // A cycle or a BigInt among the fields: the record still says where it came from and what it was about.
    const { level, time, msg } = record;
    return JSON.stringify({ ...bindingsOnly(record), level, time, msg, logError: `fields not serializable: ${(err as Error).message}` });
  }
}

function bindingsOnly(record: Record<string, unknown>): Record<string, unknown> {
  return typeof record.plugin === 'string' ? { plugin: record.plugin, name: record.name } : {};
}

class StderrLogger implements Logger {
  private threshold: number = LEVELS.info;
  private name: string = 'info';
  readonly trace: LogFn;
  readonly debug: LogFn;
  readonly info: LogFn;
  readonly warn: LogFn;
  readonly error: LogFn;
  readonly fatal: LogFn;

  constructor(
    private readonly bindings: Record<string, unknown>,
    private readonly write: (line: string) => void,
    level = 'info',
  ) {
    this.level = level;
    const at =
      (n: number): LogFn =>
      (first: string | object, ...rest: unknown[]) =>
        this.record(n, first, rest);
    this.trace = at(LEVELS.trace);
    this.debug = at(LEVELS.debug);
    this.info = at(LEVELS.info);
    this.warn = at(LEVELS.warn);
    this.error = at(LEVELS.error);
    this.fatal = at(LEVELS.fatal);
  }

  get level(): string {
    return this.name;
  }

  set level(name: string) {
    if (name === 'silent') this.threshold = Infinity;
    else if ((LEVEL_NAMES as string[]).includes(name)) this.threshold = LEVELS[name as LevelName];
    else throw new Error(`unknown log level "${name}": one of ${LEVEL_NAMES.join(', ')}, silent`);
    this.name = name;
  }

  child(bindings: Record<string, unknown>): Logger {
    return new StderrLogger({ ...this.bindings, ...bindings }, this.write, this.name);
  }

  private record(level: number, first: unknown, rest: unknown[]): void {
    if (level < this.threshold) return;
    let fields: Record<string, unknown> = {};
    let msg: string | undefined;
    if (typeof first === 'object' && first !== null) {
      fields = fieldsOf(first);
      const [m, ...args] = rest;
      if (m !== undefined) msg = args.length > 0 ? format(String(m), ...args) : String(m);
    } else {
      msg = rest.length > 0 ? format(String(first), ...rest) : String(first);
    }
    const record = { level, time: Date.now(), ...this.bindings, ...fields, ...(msg === undefined ? {} : { msg }) };
    let line = stringify(record);
    if (Buffer.byteLength(line) > MAX_RECORD_BYTES) {
      const short = msg !== undefined && msg.length > 4_096 ? `${msg.slice(0, 4_096)}…` : msg;
      line = JSON.stringify({ level, time: record.time, ...this.bindings, msg: short, logError: `record over ${MAX_RECORD_BYTES} bytes: fields dropped` });
    }
    this.write(`${line}\n`);
  }
}

/** The SDK's default logger of a plugin named `name`: pino's line with `plugin` and `name` bound, as before. */
export function stderrLogger(name: string, write: (line: string) => void = writeStderr): Logger {
  return new StderrLogger({ plugin: name, name }, write);
}
