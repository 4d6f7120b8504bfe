import type { CheckResult, ProgressEvent, Report } from './types.js';

interface Style {
  pass: (s: string) => string;
  fail: (s: string) => string;
  skip: (s: string) => string;
  dim: (s: string) => string;
}

const plain: Style = { pass: (s) => s, fail: (s) => s, skip: (s) => s, dim: (s) => s };
const ansi = (code: number) => (s: string) => `\x1b[${code}m${s}\x1b[0m`;
const colored: Style = { pass: ansi(32), fail: ansi(31), skip: ansi(33), dim: ansi(2) };

function mark(r: CheckResult, st: Style): string {
  if (r.expectedFailure) return st.skip('x');
  if (r.status === 'pass') return st.pass('✓');
  if (r.status === 'fail') return st.fail('✗');
  return st.skip('-');
}

/** Lines of a failure's message the console shows; the JSON and JUnit reports keep every line. */
const SHOWN_LINES = 6;

function messageLines(message: string): string[] {
  const lines = message.split('\n');
  if (lines.length <= SHOWN_LINES) return lines;
  return [...lines.slice(0, SHOWN_LINES - 1), `... and ${lines.length - SHOWN_LINES + 1} more lines (all of them in the JSON and JUnit reports)`];
}

function line(r: CheckResult, st: Style): string {
  const detail = r.status === 'skipped' ? st.dim(` (skipped: ${r.reason ?? ''})`) : r.expectedFailure ? st.dim(' (expected failure)') : st.dim(` ${r.durationMs} ms`);
  const out = [`${mark(r, st)} ${r.id}${detail}`];
  if (r.status === 'fail' && r.message) out.push(...messageLines(r.message).map((l) => `    ${st.fail(l)}`));
  return out.join('\n');
}

/**
 * A progress display: on a terminal, the running check on a line of its own, replaced by its verdict
 * when it ends; elsewhere (CI logs), one line per verdict.
 */
export function progressPrinter(
  out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number },
  opts: { color?: boolean } = {},
): (e: ProgressEvent) => void {
  const tty = out.isTTY === true;
  const st = (opts.color ?? (tty && !process.env.NO_COLOR)) ? colored : plain;
  // A line that wraps could not be taken back with \r: the transient line fits the terminal.
  const fit = (s: string): string => s.slice(0, Math.max(20, (out.columns ?? 80) - 1));
  return (e) => {
    if (e.type === 'begin') out.write(`running ${e.total} checks\n`);
    else if (e.type === 'check-start' && tty) out.write(st.dim(fit(`… [${e.index + 1}/${e.total}] ${e.id}  ${e.title}`)));
    else if (e.type === 'check-end') out.write(`${tty ? '\r\x1b[2K' : ''}${line(e.result, st)}\n`);
    else if (e.type === 'cleanup' && tty) out.write(`${st.dim('cleaning up…')}\r`);
  };
}

/** The verdict in a few lines: counts, then every failure with its message. */
export function formatSummary(report: Report, opts: { color?: boolean } = {}): string {
  const st = opts.color ? colored : plain;
  const s = report.summary;
  const who = report.plugin.info ? `${report.plugin.info.name} ${report.plugin.info.version} (${report.plugin.info.vendor})` : report.plugin.command;
  const lines = [
    '',
    `${who}, protocol ${report.plugin.protocolVersion ?? 'unknown'}: ${s.total} check${s.total === 1 ? '' : 's'} in ${(report.durationMs / 1000).toFixed(1)} s`,
    `  ${st.pass(`${s.passed} passed`)}, ${s.failed ? st.fail(`${s.failed} failed`) : '0 failed'}, ${st.skip(`${s.skipped} skipped`)}${s.expectedFailures ? `, ${s.expectedFailures} expected failures` : ''}`,
  ];
  const failures = report.checks.filter((c) => c.status === 'fail' && !c.expectedFailure);
  if (failures.length) {
    lines.push('', 'failed:');
    for (const f of failures) lines.push(`  ${st.fail('✗')} ${f.id}: ${messageLines(f.message ?? '').join('\n      ')}`);
  }
  if (report.unknownExpectedFailures.length) {
    lines.push('', `expected failures naming no check: ${report.unknownExpectedFailures.join(', ')}`);
  }
  if (report.interrupted) lines.push('', st.fail('interrupted: the checks after the last one shown did not run'));
  lines.push('', report.ok ? st.pass('conformant: nothing unexpected failed') : st.fail('not conformant'));
  return lines.join('\n');
}
