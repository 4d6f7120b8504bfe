import type { CheckResult, Report } from './types.js';

/** XML 1.0 forbids most control characters even escaped; they are dropped. */
export function escapeXml(text: string): string {
  return text
    .replace(/[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

const seconds = (ms: number): string => (ms / 1000).toFixed(3);

function testcase(c: CheckResult, suite: string): string {
  const open = `    <testcase name="${escapeXml(c.id)}" classname="${escapeXml(`${suite}.${c.group}`)}" time="${seconds(c.durationMs)}">`;
  const props = `      <system-out>${escapeXml(`${c.title}\nverifies: ${c.verifies}`)}</system-out>`;
  let verdict = '';
  if (c.expectedFailure) {
    // JUnit has no expected failure; CI tools show a skip, which is what it means for the build.
    verdict = `      <skipped message="${escapeXml(`expected failure: ${c.message ?? ''}`)}"/>`;
  } else if (c.status === 'fail') {
    const message = c.message ?? 'failed';
    verdict = `      <failure message="${escapeXml(message.split('\n')[0] ?? message)}" type="${escapeXml(c.group)}">${escapeXml(message)}</failure>`;
  } else if (c.status === 'skipped') {
    verdict = `      <skipped message="${escapeXml(c.reason ?? 'skipped')}"/>`;
  }
  return [open, verdict, props, '    </testcase>'].filter(Boolean).join('\n');
}

/**
 * The report as JUnit XML, the dialect Jenkins, GitLab and GitHub test reporters read: one testsuite per
 * group, one testcase per check; expected failures appear skipped, unexpected passes as failures.
 */
export function toJunit(report: Report): string {
  const name = report.plugin.info?.name ?? report.plugin.command;
  const groups = new Map<string, CheckResult[]>();
  for (const c of report.checks) groups.set(c.group, [...(groups.get(c.group) ?? []), c]);
  const count = (cs: CheckResult[]) => ({
    tests: cs.length,
    failures: cs.filter((c) => c.status === 'fail' && !c.expectedFailure).length,
    skipped: cs.filter((c) => c.status === 'skipped' || c.expectedFailure).length,
    time: seconds(cs.reduce((t, c) => t + c.durationMs, 0)),
  });
  const all = count(report.checks);
  const suites = [...groups].map(([group, cs]) => {
    const n = count(cs);
    return [
      `  <testsuite name="${escapeXml(`${name}.${group}`)}" tests="${n.tests}" failures="${n.failures}" errors="0" skipped="${n.skipped}" time="${n.time}" timestamp="${escapeXml(report.startedAt.replace(/Z$/, ''))}">`,
      ...cs.map((c) => testcase(c, name)),
      '  </testsuite>',
    ].join('\n');
  });
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${escapeXml(`hvplug conformance: ${name}`)}" tests="${all.tests}" failures="${all.failures}" errors="0" skipped="${all.skipped}" time="${seconds(report.durationMs)}">`,
    ...suites,
    '</testsuites>',
    '',
  ].join('\n');
}
