import type { Logger } from 'pino';
import { z } from 'zod';

const PINO_LEVELS: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

const PinoLine = z.looseObject({ level: z.number().int(), msg: z.string().optional() });

/**
 * A plugin's stderr is its log channel. pino JSON lines are re-emitted at their own level through the
 * host's logger (bound to plugin and pid); anything else is kept as text. The last lines are kept for
 * crash reports.
 */
export class PluginLog {
  private readonly tail: string[] = [];
  private partial = '';

  constructor(
    private readonly logger: Logger,
    private readonly tailSize = 20,
  ) {}

  push(chunk: Buffer): void {
    const text = this.partial + chunk.toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.line(line);
  }

  flush(): void {
    if (this.partial) this.line(this.partial);
    this.partial = '';
  }

  lastLines(): string[] {
    return [...this.tail];
  }

  private line(raw: string): void {
    const line = raw.replace(/\r$/, '');
    if (!line) return;
    this.tail.push(line);
    if (this.tail.length > this.tailSize) this.tail.shift();
    const parsed = line.startsWith('{') ? PinoLine.safeParse(safeJson(line)) : undefined;
    if (parsed?.success) {
      const { level, msg, time: _time, pid: _pid, hostname: _host, ...fields } = parsed.data;
      const method = PINO_LEVELS[level] ?? 'info';
      this.logger[method](fields, msg ?? '');
    } else {
      this.logger.info({ stderr: true }, line);
    }
  }
}

function safeJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}
