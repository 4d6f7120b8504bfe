import { constants } from 'node:fs';
import { access, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { PluginCatalog, PluginSpec } from '../core/index.js';
import { VmConfig, formatIssues, toIssues, type VmConfigInput } from 'hvplug/protocol';
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
import { stderrLog } from './context.js';
import { safeJson, safeLine, safeText } from './safe-text.js';

export const CONFORMANCE_HELP = `hvplug conformance: run the conformance suite against a plugin

usage:
  hvplug conformance [options] --plugin <name>
  hvplug conformance [options] -- <command> [args...]
  hvplug conformance [options] --connect <address> [--cert <file> --key <file> --ca <file>]

Checks chosen from the method table and the plugin's capabilities: handshake and version negotiation,
every method with valid and invalid params, refusal of what is not advertised, the VM state machine,
idempotency, devices, events, snapshots, recovery, cancellation, stdout hygiene, exit on stdin EOF,
concurrency; every message on the wire is held to the protocol's schemas.

options:
  --plugin <name>               a configured or discovered plugin (see hvplug plugins)
  --config <file.toml>          plugins config file; default $HVPLUG_CONFIG
  --plugin-dir <dir>            also look for hvplug-plugin-<name> executables here (repeatable)
  --connect <address>           a plugin that listens (started with --listen): unix:<path> or
                                tls://<host>:<port>; checks that need a second connection or a
                                process of the suite's own are skipped (one host at a time)
  --cert, --key <file>          with tls://: the suite's client certificate and key (PEM)
  --ca <file>                   with tls://: the CA that signed the plugin's certificate (PEM)
  --json <file>                 write the report as JSON ("-" for stdout)
  --junit <file>                write the report as JUnit XML
  --only <id|group>             run only these checks: an id, a dotted prefix (method.vm/pause), a
                                group (device); * matches anything; repeatable or comma-separated
  --skip <id|group>             leave these checks out, matched the same way (a selector that matches
                                no check is a usage error)
  --expected-failures <file>    check ids known to fail (one per line, or a JSON list): they do not fail
                                the run, and fail it when they pass
  --vm-config <file.json>       merged into every VM config the suite creates (kernel, initrd, ...)
  --poweroff-config <file.json> merged over --vm-config for the guest power-off check: a config whose
                                guest powers itself off within seconds of boot (without it that check
                                is skipped); default for example-proprietary and qemu: their own
  --call-timeout <seconds>      deadline of every call the suite makes; default: each method's own,
                                from the method table (5 s for health/ping to 300 s for vm/save)
  --check-timeout <seconds>     deadline of each check (default 60)
  --log-level <level>           show the plugin's stderr logs at this level (default: hidden)
  --quiet                       no progress display, only the summary
  -h, --help                    show this help

Selectors, report paths and the expected-failures file are checked before the plugin starts.

exit status: 0 when nothing unexpected failed, 1 otherwise, 2 for a usage error, 130 when interrupted
(Ctrl-C stops after the running check and still cleans up; a second Ctrl-C quits at once).`;

class Usage extends Error {}

const FLAGS = {
  plugin: { type: 'string' },
  config: { type: 'string' },
  'plugin-dir': { type: 'string', multiple: true },
  connect: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
  json: { type: 'string' },
  junit: { type: 'string' },
  only: { type: 'string', multiple: true },
  skip: { type: 'string', multiple: true },
  'expected-failures': { type: 'string' },
  'vm-config': { type: 'string' },
  'poweroff-config': { type: 'string' },
  'call-timeout': { type: 'string' },
  'check-timeout': { type: 'string' },
  'log-level': { type: 'string' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

function seconds(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !(n > 0) || n > 3600) throw new Usage(`--${flag}: expected seconds from 0 to 3600, got "${value}"`);
  return Math.round(n * 1000);
}

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
    throw new Usage(`--${flag}: cannot read ${file}: ${(err as Error).message}`);
  }
  const parsed = VmConfig.partial().safeParse(doc);
  if (!parsed.success) throw new Usage(`--${flag}: ${formatIssues(toIssues(parsed.error))}`);
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
  if (bad.length) throw new Usage(bad.map((s) => `--${flag} ${s} matches no check`).join('; '));
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
    throw new Usage(`--${flag}: cannot write ${file}: ${why(err)}`);
  }
}

async function expectedFailures(file: string | undefined): Promise<string[] | undefined> {
  if (file === undefined) return undefined;
  try {
    return await readExpectedFailures(file);
  } catch (err) {
    throw new Usage(`--expected-failures: cannot read ${file}: ${why(err)}`);
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
    if (cert ?? key ?? ca) throw new Usage('--cert, --key and --ca go with --connect tls://...');
    return undefined;
  }
  const parsed = PluginSpec.safeParse({ name: 'listening-plugin', connect, ...(cert ?? key ?? ca ? { tls: { cert, key, ca } } : {}) });
  if (!parsed.success) throw new Usage(`--connect ${connect}: ${formatIssues(toIssues(parsed.error))}`);
  for (const [flag, file] of Object.entries({ cert, key, ca })) {
    if (file !== undefined) await access(file, constants.R_OK).catch((err: unknown) => {
      throw new Usage(`--${flag}: cannot read ${file}: ${why(err)}`);
    });
  }
  return { command: connect, connect, tls: parsed.data.tls };
}

/** The plugin to test: a command after `--`, or a plugin found by name as the host would find it. */
async function target(name: string | undefined, command: string[], config: string | undefined, dirs: string[] | undefined): Promise<Target> {
  if (name !== undefined && command.length) throw new Usage('give either --plugin <name> or -- <command>, not both');
  const [cmd, ...args] = command;
  if (cmd !== undefined) return { command: cmd, args };
  if (name === undefined) throw new Usage('no plugin: give --plugin <name> or -- <command> [args...]');
  const spec = await new PluginCatalog({ configFile: config ?? process.env.HVPLUG_CONFIG, pluginDirs: dirs, pathEnv: process.env.PATH }).resolve(name);
  if (spec.command === undefined) throw new Usage(`plugin ${name} is a listening one (connect = "${spec.connect}"): use --connect ${spec.connect}`);
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

/** `hvplug conformance ...` (argv after the command name); answers the exit status. */
export async function runConformanceCommand(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const command = dash < 0 ? [] : argv.slice(dash + 1);
  try {
    const { values, positionals } = parseArgs({ args: own, options: FLAGS, strict: true, allowPositionals: true });
    if (values.help) {
      process.stdout.write(`${CONFORMANCE_HELP}\n`);
      return 0;
    }
    if (positionals.length) throw new Usage(`unexpected argument "${positionals[0]}" (a plugin command goes after --)`);
    const level = values['log-level'];
    if (level !== undefined && !(LEVELS as readonly string[]).includes(level)) throw new Usage(`--log-level: expected one of ${LEVELS.join(', ')}`);
    const only = list(values.only);
    const skip = list(values.skip);
    checkSelectors('only', only);
    checkSelectors('skip', skip);
    await checkWritable('json', values.json);
    await checkWritable('junit', values.junit);
    const expected = await expectedFailures(values['expected-failures']);
    const listening = await connectTarget(values);
    if (listening && (values.plugin !== undefined || command.length)) throw new Usage('give one of --plugin <name>, -- <command> or --connect <address>');
    const plugin = listening ?? (await target(values.plugin, command, values.config, values['plugin-dir']));
    const quiet = values.quiet ?? false;
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
    const progressTo = values.json === '-' ? process.stderr : process.stdout;
    const report = await runConformance({
      ...plugin,
      only,
      skip,
      expectedFailures: expected,
      vmConfig: await vmConfig(values['vm-config']),
      powerOffConfig:
        (await vmConfig(values['poweroff-config'], 'poweroff-config')) ?? (values.plugin !== undefined ? BUNDLED_POWEROFF[values.plugin] : undefined),
      callTimeoutMs: seconds('call-timeout', values['call-timeout']),
      checkTimeoutMs: seconds('check-timeout', values['check-timeout']),
      logger: pino({ level: level ?? 'silent' }, stderrLog()),
      onProgress: quiet ? undefined : printableProgress(progressPrinter(progressTo)),
      signal: stop.signal,
    }).finally(() => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    });
    if (values.json) await write(values.json, `${safeJson(JSON.stringify(report, null, 2))}\n`);
    if (values.junit) await write(values.junit, toJunit(report));
    const tty = progressTo.isTTY === true;
    progressTo.write(`${tty ? '\r\x1b[2K' : ''}${formatSummary(printableReport(report), { color: tty && !process.env.NO_COLOR })}\n`);
    if (report.interrupted) return 130;
    return report.ok ? 0 : 1;
  } catch (err) {
    if (err instanceof Usage || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`hvplug conformance: ${safeText((err as Error).message)} (see: hvplug conformance --help)\n`);
      return 2;
    }
    process.stderr.write(`hvplug conformance: ${safeText((err as Error).message)}\n`);
    return 1;
  }
}
