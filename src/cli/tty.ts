import { safeLine } from './safe-text.js';

// Output for a person at a terminal: log lines as text instead of pino's JSON, and a status line that says what a
// long wait is waiting for. Piped output never comes here (JSON lines stay as they are for whoever reads them).

/** The most of one log line shown at the terminal; a longer one is cut and says so (pino lines are ours, but carry plugins' text). */
export const MAX_HUMAN_LOG_LINE = 4_096;

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const LEVEL_COLORS: Readonly<Record<number, string>> = { 10: '90', 20: '90', 30: '36', 40: '33', 50: '31', 60: '35' };
/** pino's own fields, shown in the line's head or not at all. */
const HEAD_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name', 'v']);

function clock(time: unknown): string {
  const d = typeof time === 'number' ? new Date(time) : new Date();
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

function fieldValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/**
 * One pino JSON line as a person reads it: `12:03:04 WARN  message key=value ...`. Anything that is not a JSON object
 * (it cannot happen with our pino, but a formatter must not lose a line) is shown as it came.
 */
export function humanLogLine(line: string, color: boolean): string {
  let doc: unknown;
  try {
    doc = JSON.parse(line);
  } catch {
    return safeLine(line.trimEnd());
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return safeLine(line.trimEnd());
  const rec = doc as Record<string, unknown>;
  const level = typeof rec.level === 'number' ? rec.level : 30;
  const name = (LEVEL_NAMES[level] ?? String(level)).padEnd(5);
  const shownLevel = color && LEVEL_COLORS[level] ? `\x1b[${LEVEL_COLORS[level]}m${name}\x1b[0m` : name;
  // A plugin's own pino fields arrive nested under `fields` (see plugin-log.ts): shown flat, less what the line says already.
  const own = Object.entries(rec).filter(([k]) => !HEAD_FIELDS.has(k) && k !== 'fields');
  const nested = typeof rec.fields === 'object' && rec.fields !== null && !Array.isArray(rec.fields) ? Object.entries(rec.fields) : [];
  const seen = new Map(own);
  const fields = [...own, ...nested.filter(([k, v]) => !HEAD_FIELDS.has(k) && seen.get(k) !== v && !(k in rec))].map(([k, v]) => `${k}=${fieldValue(v)}`);
  if (rec.fields !== undefined && nested.length === 0) fields.push(`fields=${fieldValue(rec.fields)}`);
  const text = safeLine([typeof rec.msg === 'string' ? rec.msg : '', ...fields].filter(Boolean).join(' '));
  const cut = text.length > MAX_HUMAN_LOG_LINE ? `${text.slice(0, MAX_HUMAN_LOG_LINE)}... (${text.length - MAX_HUMAN_LOG_LINE} more characters)` : text;
  return `${clock(rec.time)} ${shownLevel} ${cut}`;
}

// The one status line at the bottom of the terminal, if any is shown: whoever writes a line first takes it away.
let statusShown = false;

/** Takes the status line off the terminal, so that the line written next starts at column 0 on a clean line. */
export function clearStatus(): void {
  if (!statusShown) return;
  statusShown = false;
  try {
    process.stderr.write('\r\x1b[2K');
  } catch {
    // A closed terminal: there is nothing left to clear.
  }
}

export interface Progress {
  /** Something was written: the status line waits a second of quiet before it is drawn again. */
  touch(): void;
  /** The wait is over: the line goes. Idempotent. */
  done(): void;
}

const NO_PROGRESS: Progress = { touch: () => undefined, done: () => undefined };

let current: Progress | undefined;

/** Output was written: the running status line, if any, is taken away and waits for quiet again. */
export function noteOutput(): void {
  current?.touch();
  clearStatus();
}

function seconds(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/**
 * A status line on stderr for a long wait: `what` and how long so far, redrawn once a second, not before a second of
 * the wait has passed (a short wait shows nothing), and not while other output keeps coming. Only on a terminal.
 */
export function startProgress(enabled: boolean, what: (elapsed: string) => string): Progress {
  if (!enabled) return NO_PROGRESS;
  const started = Date.now();
  let quietSince = started;
  const draw = (): void => {
    try {
      const now = Date.now();
      if (now - quietSince < 1_000) return;
      const columns = process.stderr.columns || 80;
      const text = safeLine(`hvplug: ${what(seconds(now - started))}`).slice(0, Math.max(10, columns - 1));
      process.stderr.write(`\r\x1b[2K${text}`);
      statusShown = true;
    } catch {
      // A timer must not throw; a terminal gone away just loses its status line.
    }
  };
  const timer = setInterval(draw, 1_000);
  timer.unref();
  const progress: Progress = {
    touch: () => void (quietSince = Date.now()),
    done: () => {
      clearInterval(timer);
      if (current === progress) current = undefined;
      clearStatus();
    },
  };
  current?.done();
  current = progress;
  return progress;
}
