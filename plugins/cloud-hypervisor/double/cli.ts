// The real binary's command line (cloud-hypervisor/src/main.rs, clap), reduced to the VMM options.
// VM options would boot a VM from the command line; the double only builds VMs through the API and
// says so, rather than silently ignoring a kernel it was asked to boot.
import type { EventTarget } from './event-log.js';

export type ApiSocket = { readonly path: string } | { readonly fd: number };

export interface DoubleOptions {
  readonly apiSocket: ApiSocket;
  readonly eventMonitor: EventTarget | undefined;
  readonly verbosity: number;
  readonly logFile: string | undefined;
  readonly noShutdown: boolean;
}

export type CliResult =
  | { readonly kind: 'run'; readonly options: DoubleOptions }
  | { readonly kind: 'print'; readonly text: string; readonly code: number };

/** Options of the real binary that build or start a VM. */
const VM_OPTIONS = new Set([
  'balloon', 'cmdline', 'console', 'cpus', 'debug-console', 'device', 'disk', 'firmware', 'fs', 'fw-cfg-config',
  'gdb', 'generic-vhost-user', 'host-data', 'igvm', 'initramfs', 'ivshmem', 'kernel', 'landlock-rules', 'memory',
  'memory-zone', 'net', 'numa', 'pci-segment', 'platform', 'pmem', 'pvmemcontrol', 'pvpanic', 'rate-limit-group',
  'restore', 'rng', 'serial', 'tpm', 'user-device', 'vdpa', 'vsock', 'watchdog',
]);
const WITH_VALUE = new Set(['api-socket', 'event-monitor', 'log-file', 'log-format', 'seccomp']);
const FLAGS = new Set(['no-shutdown', 'landlock']);
const SECCOMP = new Set(['true', 'false', 'log', 'errno']);

/**
 * option_parser's split_commas: a comma inside double quotes or brackets does not split; quotes are
 * dropped (there is no escape), brackets kept; unbalanced ones are a syntax error (undefined).
 */
export function splitCommas(text: string): string[] | undefined {
  const list: string[] = [];
  let brackets = 0;
  let quoted = false;
  let current = '';
  for (const c of text.trim()) {
    if (c === '[') {
      brackets++;
      current += c;
    } else if (c === ']') {
      if (--brackets < 0) return undefined;
      current += c;
    } else if (c === '"') {
      quoted = !quoted;
    } else if (c === ',' && brackets === 0 && !quoted) {
      list.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  list.push(current);
  return brackets === 0 && !quoted ? list : undefined;
}

/**
 * OptionParser::parse for keys that all take a value: values are set in order until the first error (an
 * unknown key, a key without `=`, bad syntax), which is returned; what was set before it stays set, as
 * --api-socket's caller relies on (it ignores the error). An empty value counts as not given.
 */
export function parseOptions(text: string, keys: readonly string[]): { values: Map<string, string>; error?: string } {
  const values = new Map<string, string>();
  if (text.trim() === '') return { values };
  const parts = splitCommas(text);
  if (!parts) return { values, error: `invalid syntax:${text}` };
  for (const part of parts) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    if (!keys.includes(key)) return { values, error: `unknown option: ${key}` };
    if (eq < 0) return { values, error: `invalid syntax:${part}` };
    const value = part.slice(eq + 1).trim();
    if (value === '') values.delete(key);
    else values.set(key, value);
  }
  return { values };
}

function parseFd(text: string): number | undefined {
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

class UsageError extends Error {
  constructor(
    message: string,
    readonly code = 2,
  ) {
    super(message);
  }
}

function apiSocketOf(value: string): ApiSocket {
  // The real binary ignores the parse error: whatever was parsed before it counts, else the text is the path.
  const { values } = parseOptions(value, ['path', 'fd']);
  const fd = values.get('fd');
  if (fd !== undefined) {
    const n = parseFd(fd);
    if (n === undefined) throw new UsageError(`Error parsing --api-socket: invalid digit found in string: ${fd}`, 1);
    return { fd: n };
  }
  return { path: values.get('path') ?? value };
}

function eventMonitorOf(value: string): EventTarget {
  const { values, error } = parseOptions(value, ['path', 'fd']);
  if (error) throw new UsageError(`Error parsing --event-monitor: ${error}`, 1);
  const fd = values.get('fd');
  if (fd !== undefined) {
    const n = parseFd(fd);
    if (n === undefined) throw new UsageError('Error parsing --event-monitor', 1);
    return { fd: n };
  }
  const path = values.get('path');
  if (path === undefined) throw new UsageError('Error parsing --event-monitor: path or fd required', 1);
  return { path };
}

export const USAGE = `Launch a cloud-hypervisor VMM (contract double: VMs are created through the REST API only).

Usage: cloud-hypervisor --api-socket <path=<path>|fd=<fd>|<path>> [OPTIONS]

Options:
      --api-socket <api-socket>        HTTP API socket (UNIX domain socket): path=<path> or fd=<fd>.
      --event-monitor <event-monitor>  File to report events on: path=<path> or fd=<fd>
      --log-file <log-file>            Log file. Standard error is used if not specified
      --no-shutdown                    Do not exit when the guest shuts down; keep the VM created
      --seccomp <seccomp>              Accepted for compatibility: true|false|log|errno
      --landlock                       Accepted for compatibility; no effect
  -v...                                Sets the level of debugging output
  -h, --help                           Print help
  -V, --version                        Print version
`;

export function parseArgs(argv: readonly string[], versionText: string): CliResult {
  try {
    return parseOrThrow(argv, versionText);
  } catch (e) {
    if (e instanceof UsageError) return { kind: 'print', text: `error: ${e.message}\n`, code: e.code };
    throw e;
  }
}

function parseOrThrow(argv: readonly string[], versionText: string): CliResult {
  let apiSocket: ApiSocket | undefined;
  let eventMonitor: EventTarget | undefined;
  let verbosity = 0;
  let logFile: string | undefined;
  let noShutdown = false;
  let version = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (/^-v+$/.test(arg)) {
      verbosity += arg.length - 1;
      continue;
    }
    if (arg === '-V' || arg === '--version') {
      version = true;
      continue;
    }
    if (arg === '-h' || arg === '--help') return { kind: 'print', text: USAGE, code: 0 };
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument '${arg}' found`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq > 0 ? eq : undefined);
    if (VM_OPTIONS.has(name)) {
      throw new UsageError(
        `--${name} is a VM option, which the cloud-hypervisor contract double does not take: ` +
          'start it with --api-socket only and create the VM with PUT /api/v1/vm.create',
      );
    }
    if (FLAGS.has(name)) {
      if (name === 'no-shutdown') noShutdown = true;
      continue;
    }
    if (!WITH_VALUE.has(name)) throw new UsageError(`unexpected argument '--${name}' found`);
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`a value is required for '--${name} <${name}>' but none was supplied`);
    if (name === 'api-socket') apiSocket = apiSocketOf(value);
    else if (name === 'event-monitor') eventMonitor = eventMonitorOf(value);
    else if (name === 'log-file') logFile = value;
    else if (name === 'seccomp' && !SECCOMP.has(value)) throw new UsageError(`invalid value '${value}' for '--seccomp <seccomp>'`);
  }
  if (version) {
    return { kind: 'print', text: `${versionText}\n`, code: 0 };
  }
  if (argv.length === 0) return { kind: 'print', text: USAGE, code: 2 };
  if (!apiSocket) throw new UsageError('the cloud-hypervisor contract double needs --api-socket: it has no other way to receive a VM');
  return { kind: 'run', options: { apiSocket, eventMonitor, verbosity, logFile, noShutdown } };
}
