/**
 * hvplug/conformance: the plugin conformance suite, for `hvplug conformance` and for vendors' own test
 * runners.
 *
 *   const report = await runConformance({ command: './my-plugin', expectedFailures: ['device.vfio.hotplug'] });
 *   if (!report.ok) process.exitCode = 1;
 */
export { runConformance, DEFAULTS } from './run.js';
export { toJunit, escapeXml } from './junit.js';
export { progressPrinter, formatSummary } from './progress.js';
export { matches, selected, unmatched, parseExpectedFailures, readExpectedFailures } from './selection.js';
export { everyCheckId } from './suite.js';
export { SESSION_METHOD_CHECKS } from './checks/session-methods.js';
export { TRANSITIONS } from './checks/lifecycle.js';
export type { CheckResult, CheckStatus, ConformanceOptions, ProgressEvent, Report, Summary } from './types.js';
