// Reading the guest's serial console log, which QEMU appends to (chardev file/logfile). Offsets are in
// bytes, so a reader can resume where it stopped and a waiter can ignore what came before an action.
import { open, stat } from 'node:fs/promises';

export class ConsoleTimeoutError extends Error {
  override readonly name = 'ConsoleTimeoutError';
  constructor(
    message: string,
    /** The console text that was searched, for the failure message of a test or an error report. */
    readonly text: string,
  ) {
    super(message);
  }
}

/** Bytes from `from` to the current end, and the offset to resume at. Missing file: empty. */
export async function readConsole(path: string, from = 0): Promise<{ text: string; end: number }> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return { text: '', end: from };
  try {
    const { size } = await fh.stat();
    if (size <= from) return { text: '', end: from };
    const buf = Buffer.alloc(size - from);
    const { bytesRead } = await fh.read(buf, 0, buf.length, from);
    return { text: buf.subarray(0, bytesRead).toString('utf8'), end: from + bytesRead };
  } finally {
    await fh.close();
  }
}

export async function consoleSize(path: string): Promise<number> {
  return stat(path).then(
    (s) => s.size,
    () => 0,
  );
}

export interface WaitForConsoleOptions {
  /** Only text after this byte offset counts. Default 0. */
  readonly from?: number;
  readonly timeoutMs?: number;
  readonly pollMs?: number;
  readonly signal?: AbortSignal;
}

/** Waits until the console text after `from` matches `pattern`; returns the match and the text read. */
export async function waitForConsole(path: string, pattern: RegExp, opts: WaitForConsoleOptions = {}): Promise<{ match: RegExpMatchArray; text: string }> {
  const end = Date.now() + (opts.timeoutMs ?? 30_000);
  const from = opts.from ?? 0;
  let text = '';
  let offset = from;
  for (;;) {
    const chunk = await readConsole(path, offset);
    text += chunk.text;
    offset = chunk.end;
    const match = text.match(pattern);
    if (match) return { match, text };
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (Date.now() >= end) throw new ConsoleTimeoutError(`console ${path}: no match for ${pattern} within ${opts.timeoutMs ?? 30_000} ms`, text);
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 50));
  }
}
