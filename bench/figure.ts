import type { BenchConfig } from './config.js';
import type { FigureReport } from './report.js';
import type { Workspace } from './setup.js';

export interface FigureContext {
  ws: Workspace;
  cfg: BenchConfig;
  quick: boolean;
  log: (msg: string) => void;
}

export type FigureOutcome = Omit<FigureReport, 'id' | 'title' | 'durationMs'>;

export interface Figure {
  id: string;
  title: string;
  run(ctx: FigureContext): Promise<FigureOutcome>;
}

export function notMeasured(reason: string, method: string, raw: Record<string, unknown> = {}): FigureOutcome {
  return { notMeasured: reason, method, rows: [], raw };
}
