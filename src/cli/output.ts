import { safeJson } from './safe-text.js';
import { noteOutput } from './tty.js';

/** Where Output writes: process.stdout, or what stands for it (the fast path's descriptor, fast.ts). */
export interface OutputSink {
  readonly writable: boolean;
  write(text: string): unknown;
}

/**
 * What a command prints on stdout, in one of two shapes: text for people, or JSON for scripts (one
 * object per line for streams of records, one document for single answers). Logs never come here;
 * they go to stderr through pino, so `--json` output stays parseable.
 */
export class Output {
  constructor(
    readonly json: boolean,
    private readonly stream: OutputSink = process.stdout,
  ) {}

  /** One record of a stream: a JSON line, or the human text (nothing when the record is not for people). */
  record(json: Record<string, unknown>, human: string | undefined): void {
    if (this.json) this.write(safeJson(JSON.stringify(json)));
    else if (human !== undefined) this.write(human);
  }

  /** A whole answer: compact JSON for scripts, or text rendered only when needed. */
  document(value: unknown, human: () => string): void {
    this.write(this.json ? safeJson(JSON.stringify(value)) : human());
  }

  /** Raw text, whatever the mode (e.g. a JSON document that is the same for both). */
  text(s: string): void {
    this.write(s);
  }

  private write(s: string): void {
    // After EPIPE (`hvplug run | head`) the stream is gone; the run still has to stop its VM quietly.
    if (!this.stream.writable) return;
    noteOutput();
    this.stream.write(s.endsWith('\n') ? s : `${s}\n`);
  }
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function table(rows: readonly (readonly string[])[], indent = ''): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) => indent + row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd())
    .join('\n');
}

/** Words wrapped to a width, continuation lines indented to line up under the first. */
export function wrap(words: readonly string[], width: number, indent: string): string {
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines.join(`\n${indent}`);
}
