import { constants } from 'node:fs';
import { access, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import pino from 'pino';
import * as z from 'zod';
import { PluginCatalog, PluginSpec } from '../core/index.js';
import { formatIssues, PartialVmConfig, toIssues, type VmConfigInput } from 'hvplug/protocol';
import {
  everyCheckId,
  formatSummary,
  progressPrinter,
  readExpectedFailures,
  runConformance,
  toJunit,
  type CheckResult,
  type ConformanceOptions,
  type ProgressEvent,
  type Report,
  unmatched,
} from '../conformance/index.js';
import { flagSet, nonEmpty, secondsValue, type FlagTable } from './args.js';
import { defineCommand } from './command.js';
import { stderrLog, type CliContext } from './context.js';
import { UsageError } from './errors.js';
import { safeJson, safeLine, safeText } from './safe-text.js';

const DESCRIPTION = `Runs the conformance suite against a plugin: checks chosen from the method table and the plugin's \
capabilities (handshake and version negotiation, every method with valid and invalid params, refusal of what is not \
advertised, the VM state machine, idempotency, devices, events, snapshots, recovery, cancellation, stdout hygiene, exit \
on stdin EOF, concurrency); every message on the wire is held to the protocol's schemas.

The plugin is one of: --plugin <name> (configured or discovered, as --config and --plugin-dir find it), a command after \
--, or --connect <address> (a plugin started with --listen; checks that need a second connection or a process of the \
suite's own are skipped).

Progress goes to stdout, or to stderr with --json (stdout then has the report alone). Selectors, report paths and the \
expected-failures file are checked before the plugin starts. The plugin's stderr logs are hidden unless --log-level is \
given. --state-dir and --runtime-dir are accepted and unused: the suite's VMs live in directories of its own, removed \
after the run.

Exit status: 0 when nothing unexpected failed, 1 otherwise, 2 for a usage error, 130 when interrupted (Ctrl-C stops \
after the running check and still cleans up; a second Ctrl-C quits at once).`;

const FLAGS = {
  plugin: { type: 'string', value: '<name>', help: 'a configured or discovered plugin (see hvplug plugins)' },
  connect: {
    type: 'string',
    value: '<address>',
    help: 'a plugin that listens (started with --listen): unix:<path> or tls://<host>:<port>',
  },
  cert: { type: 'string', value: '<file>', help: "with tls://: the suite's client certificate (PEM)" },
  key: { type: 'string', value: '<file>', help: "with tls://: the client certificate's key (PEM)" },
  ca: { type: 'string', value: '<file>', help: "with tls://: the CA that signed the plugin's certificate (PEM)" },
  json: { type: 'boolean', help: 'print the report as JSON on stdout (progress goes to stderr)' },
  report: { type: 'string', value: '<file>', help: 'also write the report as JSON to this file' },
  junit: { type: 'string', value: '<file>', help: 'also write the report as JUnit XML to this file ("-" for stdout)' },
  only: {
    type: 'string',
    multiple: true,
    value: '<id|group>',
    help: 'run only these checks: an id, a dotted prefix (method.vm/pause), a group (device); * matches anything; repeatable or comma-separated',
  },
  skip: {
    type: 'string',
    multiple: true,
    value: '<id|group>',
    help: 'leave these checks out, matched the same way (a selector that matches no check is a usage error)',
  },
  'expected-failures': {
    type: 'string',
    value: '<file>',
    help: 'check ids known to fail (one per line, or a JSON list): they do not fail the run, and fail it when they pass',
  },
  'vm-config': { type: 'string', value: '<file.json>', help: 'merged into every VM config the suite creates (kernel, initrd, ...)' },
  'poweroff-config': {
    type: 'string',
    value: '<file.json>',
    help:
      'merged over --vm-config for the guest power-off check: a config whose guest powers itself off within seconds of boot ' +
      '(without it that check is skipped); default for example-proprietary and qemu: their own',
  },
  'call-timeout': {
    type: 'string',
    value: '<seconds>',
    help: "deadline of every call the suite makes; default: each method's own, from the method table (5 s for health/ping to 300 s for vm/save)",
  },
  'check-timeout': { type: 'string', value: '<seconds>', help: 'deadline of each check (default 60)' },
  quiet: { type: 'boolean', help: 'no progress display, only the summary' },
} as const satisfies FlagTable;

const Options = z.object({
  plugin: z.string().optional(),
  connect: z.string().optional(),
  cert: z.string().optional(),
  key: z.string().optional(),
  ca: z.string().optional(),
  json: flagSet(),
  report: z.optional(nonEmpty('a file path')),
  junit: z.optional(nonEmpty('a file path')),
  only: z.array(z.string()).optional(),
  skip: z.array(z.string()).optional(),
  'expected-failures': z.string().optional(),
  'vm-config': z.string().optional(),
  'poweroff-config': z.string().optional(),
  'call-timeout': z.optional(secondsValue()),
  'check-timeout': z.optional(secondsValue()),
  quiet: flagSet(),
  command: z.array(z.string()),
});
type Options = z.output<typeof Options>;

const list = (values: readonly string[] | undefined): string[] | undefined =>
  values?.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);

/**
 * How the bundled plugins' guests power themselves off: the example's guest program after a few ticks,
 * QEMU's initramfs once its script ends. Another plugin's way is its own to tell (--poweroff-config).
 */
export const BUNDLED_POWEROFF: Readonly<Record<string, VmConfigInput>> = {
  'example-proprietary': { plugin: { tickMs: 20, powerOffAfterTicks: 5 } },
  qemu: { plugin: { guestScript: 'exit 0' } },
};

async function vmConfig(file: string | undefined, flag = 'vm-config'): Promise<VmConfigInput | undefined> {
  if (!file) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new UsageError(`--${flag}: cannot read ${file}: ${(err as Error).message}`);
  }
  const parsed = PartialVmConfig.safeParse(doc);
  if (!parsed.success) throw new UsageError(`--${flag}: ${formatIssues(toIssues(parsed.error))}`);
  return doc as VmConfigInput;
}

/** Why a file cannot be opened, in a few words (the errno's, not node's whole message). */
function why(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return (err as Error).message;
}

/** A selector that names no check is a mistake (a typo would otherwise run nothing, or everything, and pass). */
function checkSelectors(flag: 'only' | 'skip', selectors: readonly string[] | undefined): void {
  const bad = unmatched(everyCheckId(), selectors);
  if (bad.length) throw new UsageError(bad.map((s) => `--${flag} ${s} matches no check`).join('; '));
}

/** A report file must be writable before the run, not found out after it. */
async function checkWritable(flag: string, file: string | undefined): Promise<void> {
  if (file === undefined || file === '-') return;
  try {
    const st = await stat(file).catch((err: unknown) => {
      if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
      throw err;
    });
    if (st?.isDirectory()) throw Object.assign(new Error('it is a directory'), { code: 'EISDIR' });
    await access(st ? file : dirname(file), constants.W_OK);
    if (!st && !(await stat(dirname(file))).isDirectory()) throw new Error(`${dirname(file)} is not a directory`);
  } catch (err) {
    throw new UsageError(`--${flag}: cannot write ${file}: ${why(err)}`);
  }
}

async function expectedFailures(file: string | undefined): Promise<string[] | undefined> {
  if (file === undefined) return undefined;
  try {
    return await readExpectedFailures(file);
  } catch (err) {
    throw new UsageError(`--expected-failures: cannot read ${file}: ${why(err)}`);
  }
}

type Target = Pick<ConformanceOptions, 'command' | 'args' | 'env' | 'envPassthrough' | 'sha256' | 'connect' | 'tls'>;

interface ConnectFlags {
  connect?: string;
  cert?: string;
  key?: string;
  ca?: string;
}

/** A listening plugin to connect to, its address and TLS files checked before anything starts. */
async function connectTarget(flags: ConnectFlags): Promise<Target | undefined> {
  const { connect, cert, key, ca } = flags;
  if (connect === undefined) {
    if (cert ?? key ?? ca) throw new UsageError('--cert, --key and --ca go with --connect tls://...');
    return undefined;
  }
  const parsed = PluginSpec.safeParse({ name: 'listening-plugin', connect, ...(cert ?? key ?? ca ? { tls: { cert, key, ca } } : {}) });
  if (!parsed.success) throw new UsageError(`--connect ${connect}: ${formatIssues(toIssues(parsed.error))}`);
  for (const [flag, file] of Object.entries({ cert, key, ca })) {
    if (file !== undefined) await access(file, constants.R_OK).catch((err: unknown) => {
      throw new UsageError(`--${flag}: cannot read ${file}: ${why(err)}`);
    });
  }
  return { command: connect, connect, tls: parsed.data.tls };
}

/** The plugin to test: a command after `--`, or a plugin found by name as the host would find it. */
async function target(name: string | undefined, command: string[], config: string | undefined, dirs: string[] | undefined): Promise<Target> {
  if (name !== undefined && command.length) throw new UsageError('give either --plugin <name> or -- <command>, not both');
  const [cmd, ...args] = command;
  if (cmd !== undefined) return { command: cmd, args };
  if (name === undefined) throw new UsageError('no plugin: give --plugin <name> or -- <command> [args...]');
  const spec = await new PluginCatalog({ configFile: config ?? process.env.HVPLUG_CONFIG, pluginDirs: dirs, pathEnv: process.env.PATH }).resolve(name);
  if (spec.command === undefined) throw new UsageError(`plugin ${name} is a listening one (connect = "${spec.connect}"): use --connect ${spec.connect}`);
  return { command: spec.command, args: spec.args, env: spec.env, envPassthrough: spec.envPassthrough, sha256: spec.sha256 };
}

/** A verdict as the terminal shows it: the plugin's words in it escaped (the JSON and JUnit reports keep them as sent). */
function printable(r: CheckResult): CheckResult {
  return { ...r, ...(r.message !== undefined && { message: safeText(r.message) }), ...(r.reason !== undefined && { reason: safeText(r.reason) }) };
}

function printableReport(report: Report): Report {
  const { info, protocolVersion } = report.plugin;
  return {
    ...report,
    plugin: {
      ...report.plugin,
      command: safeLine(report.plugin.command),
      ...(info && { info: { ...info, name: safeLine(info.name), version: safeLine(info.version), vendor: safeLine(info.vendor) } }),
      ...(protocolVersion !== undefined && { protocolVersion: safeLine(protocolVersion) }),
    },
    checks: report.checks.map(printable),
  };
}

function printableProgress(print: (e: ProgressEvent) => void): (e: ProgressEvent) => void {
  return (e) => print(e.type === 'check-end' ? { ...e, result: printable(e.result) } : e);
}

async function write(file: string, text: string): Promise<void> {
  if (file === '-') process.stdout.write(text);
  else await writeFile(file, text);
}

async function conformance(o: Options, ctx: CliContext): Promise<number> {
  if (o.json && o.junit === '-') throw new UsageError('--json and --junit - both want stdout: give --junit a file');
  const only = list(o.only);
  const skip = list(o.skip);
  checkSelectors('only', only);
  checkSelectors('skip', skip);
  await checkWritable('report', o.report);
  await checkWritable('junit', o.junit);
  const expected = await expectedFailures(o['expected-failures']);
  const listening = await connectTarget(o);
  if (listening && (o.plugin !== undefined || o.command.length)) throw new UsageError('give one of --plugin <name>, -- <command> or --connect <address>');
  const g = ctx.globals;
  const plugin = listening ?? (await target(o.plugin, o.command, g.config, g['plugin-dir']));
  // Ctrl-C ends the run after cleanup, so no VM it created outlives it; a second one does not wait.
  const stop = new AbortController();
  const onSignal = (): void => {
    if (stop.signal.aborted) process.exit(130);
    process.stderr.write('\nhvplug conformance: interrupted; cleaning up (again to quit at once)\n');
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A report on stdout must not be interleaved with the progress display.
  const progressTo = o.json || o.junit === '-' ? process.stderr : process.stdout;
  const report = await runConformance({
    ...plugin,
    only,
    skip,
    expectedFailures: expected,
    vmConfig: await vmConfig(o['vm-config']),
    powerOffConfig: (await vmConfig(o['poweroff-config'], 'poweroff-config')) ?? (o.plugin !== undefined ? BUNDLED_POWEROFF[o.plugin] : undefined),
    callTimeoutMs: o['call-timeout'] === undefined ? undefined : Math.round(o['call-timeout'] * 1000),
    checkTimeoutMs: o['check-timeout'] === undefined ? undefined : Math.round(o['check-timeout'] * 1000),
    // The plugin's stderr is noise in a report unless asked for: hidden by default, unlike other commands' warn.
    logger: pino({ level: g['log-level'] ?? 'silent' }, stderrLog(ctx.human)),
    onProgress: o.quiet ? undefined : printableProgress(progressPrinter(progressTo)),
    signal: stop.signal,
  }).finally(() => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  });
  const json = `${safeJson(JSON.stringify(report, null, 2))}\n`;
  if (o.json) process.stdout.write(json);
  if (o.report !== undefined) await write(o.report, json);
  if (o.junit !== undefined) await write(o.junit, toJunit(report));
  const tty = progressTo.isTTY === true;
  progressTo.write(`${tty ? '\r\x1b[2K' : ''}${formatSummary(printableReport(report), { color: tty && !process.env.NO_COLOR })}\n`);
  if (report.interrupted) return 130;
  return report.ok ? 0 : 1;
}

export const conformanceCommand = defineCommand({
  name: 'conformance',
  summary: 'run the conformance suite against a plugin (--plugin <name>, -- <command> or --connect <address>)',
  description: DESCRIPTION,
  usage: [
    'hvplug [global options] conformance [options] --plugin <name>',
    'hvplug [global options] conformance [options] --connect <address> [--cert <file> --key <file> --ca <file>]',
  ],
  flags: FLAGS,
  positionals: [],
  rest: { name: 'command', usage: '<command> [args...]', help: 'the plugin to test: a command and its arguments, started by the suite' },
  options: Options,
  action: conformance,
});
