import type * as z from 'zod/mini';
import { ErrorCode, ErrorData, errorCodeName, formatIssues, type ErrorCodeName, type Issue } from 'hvplug/protocol';

/** Every error hvplug raises is one of these; `code` is the protocol's where one applies. */
export class HvplugError extends Error {
  constructor(
    message: string,
    readonly code: ErrorCodeName | 'PluginExited' | 'ProtocolError' | 'ProtocolViolation' | 'Integrity' | 'Spawn' | 'PluginFailed' | 'PluginNotFound' | 'Vetoed' | 'VmOwned' | 'PluginUnreachable' | 'MigrationUndecided' | 'StateWrite' | 'Unreadable',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class NotSupportedError extends HvplugError {
  constructor(readonly method: string, readonly reason: string, readonly local: boolean) {
    super(`${method} not supported: ${reason}`, 'NotSupported');
  }
}

export class InvalidParamsError extends HvplugError {
  constructor(readonly method: string, readonly issues: Issue[]) {
    super(`${method}: invalid params: ${formatIssues(issues)}`, 'InvalidParams');
  }
}

export class InvalidConfigError extends HvplugError {
  constructor(message: string, readonly issues: Issue[]) {
    super(message, 'InvalidConfig');
  }
}

export class VmNotFoundError extends HvplugError {
  constructor(readonly vmId: string, message = `no VM ${vmId}`) {
    super(message, 'VmNotFound');
  }
}

export class InvalidStateError extends HvplugError {
  constructor(
    message: string,
    readonly vmId: string,
    readonly current: string,
    readonly required: string[],
  ) {
    super(message, 'InvalidState');
  }
}

export class AlreadyExistsError extends HvplugError {
  constructor(message: string, readonly id: string) {
    super(message, 'AlreadyExists');
  }
}

/** Another live host drives the VM: only it may change it (see VM ownership in the README). */
export class VmOwnedError extends HvplugError {
  constructor(
    readonly vmId: string,
    readonly owner: string,
  ) {
    super(`VM ${vmId} is driven by another host: ${owner}; only that host may change it`, 'VmOwned');
  }
}

/**
 * A file hvplug keeps (a VM's record, lease or name claim) is there but cannot be read as one: a FIFO, a directory, or
 * one too big. Nothing is inferred from it: a host that cannot tell who owns a VM or holds a name does not proceed.
 */
export class UnreadableFileError extends HvplugError {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`, 'Unreadable');
  }
}

export class TimeoutError extends HvplugError {
  constructor(readonly method: string, readonly timeoutMs: number, message = `${method} timed out after ${timeoutMs} ms`) {
    super(message, 'Timeout');
  }
}

export class CancelledError extends HvplugError {
  constructor(readonly method: string, reason?: unknown) {
    super(`${method} was cancelled${reason instanceof Error ? `: ${reason.message}` : typeof reason === 'string' ? `: ${reason}` : ''}`, 'Cancelled');
  }
}

export class VmmFailureError extends HvplugError {
  constructor(message: string, readonly vmmMessage: string, readonly vmmCode?: string | number) {
    super(message, 'VmmFailure');
  }
}

export class ResourceExhaustedError extends HvplugError {
  constructor(
    message: string,
    readonly method?: string,
    /** Which limit was reached, in the plugin's words, when it said. */
    readonly reason?: string,
  ) {
    super(message, 'ResourceExhausted');
  }
}

export class ProtocolVersionError extends HvplugError {
  constructor(readonly hostVersions: string[], readonly pluginVersions: string[]) {
    super(
      `no common protocol version: the host speaks [${hostVersions.join(', ')}], the plugin speaks [${pluginVersions.join(', ')}]`,
      'ProtocolVersionMismatch',
    );
  }
}

/** The state directory's daemon is of another hvplug whose management API this one cannot speak. */
export class DaemonVersionError extends HvplugError {
  constructor(
    /** Undefined when its hello did not say one this hvplug can read. */
    readonly daemonApi: number | undefined,
    readonly clientApi: number,
    /** The daemon's hvplug version, when it said. */
    readonly daemonVersion: string | undefined,
    readonly daemonPid: number,
  ) {
    super(
      `the hvplug daemon (pid ${daemonPid}${daemonVersion !== undefined ? `, hvplug ${daemonVersion}` : ''}) speaks ${daemonApi === undefined ? 'a daemon API this hvplug cannot read' : `daemon API ${daemonApi}`}, ` +
        `this hvplug speaks daemon API ${clientApi}: restart the daemon with this hvplug, or use the hvplug it came with`,
      'ProtocolVersionMismatch',
    );
  }
}

/** The plugin answered with a result that does not match the method table. */
export class ProtocolViolationError extends HvplugError {
  constructor(readonly method: string, readonly issues: Issue[]) {
    super(`plugin answered ${method} with a malformed result: ${formatIssues(issues)}`, 'ProtocolViolation');
  }
}

/** The byte stream from the plugin broke the framing (a stray print, an over-size message). */
export class ProtocolError extends HvplugError {
  constructor(message: string, readonly firstBytes?: string) {
    super(message, 'ProtocolError');
  }
}

export class PluginExitedError extends HvplugError {
  constructor(
    readonly plugin: string,
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stderrTail: string[],
    readonly cause_?: Error,
    /** When in the plugin's life it ended, if that is news: "before answering initialize". */
    readonly when?: string,
  ) {
    const how = `${signal ? `was killed by ${signal}` : `exited with code ${exitCode}`}${when ? ` ${when}` : ''}`;
    const tail = stderrTail.length ? `; last stderr lines:\n${stderrTail.join('\n')}` : '';
    super(`plugin ${plugin} ${how}${cause_ ? ` (${cause_.message})` : ''}${tail}`, 'PluginExited');
  }
}

/**
 * A plugin the host reaches over a socket (a spec with `connect`) cannot be reached, or the connection to it
 * was lost: the calls under way fail with this. The plugin may well still run, with its VMs; the host did
 * not see it end, only lost sight of it.
 */
export class PluginUnreachableError extends HvplugError {
  constructor(
    readonly plugin: string,
    readonly address: string,
    readonly reason: string,
  ) {
    super(`plugin ${plugin} at ${address} is unreachable: ${reason}`, 'PluginUnreachable');
  }
}

/** The plugin executable did not match its SHA-256 pin; it was not run. */
export class IntegrityError extends HvplugError {
  constructor(readonly path: string, readonly expected: string, readonly actual: string) {
    super(`refusing to run ${path}: SHA-256 is ${actual}, the pin says ${expected}`, 'Integrity');
  }
}

export class PluginSpawnError extends HvplugError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'Spawn', options);
  }
}

/**
 * A live migration ended without a verdict the host could read (the source's answer never came, or the destination
 * could not be confirmed running): both records keep their migration marks, and PluginHost.resolveMigration with
 * both hosts decides which side runs the VM. Until then neither host re-attaches it.
 */
export class MigrationUndecidedError extends HvplugError {
  constructor(
    readonly vmId: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`the migration of VM ${vmId} is undecided: ${reason}; PluginHost.resolveMigration with both hosts settles it`, 'MigrationUndecided', options);
  }
}

/**
 * The host could not write what a call changed into its state directory (a full disk, a read-only one): the call
 * fails, and the message says what was kept and what to do. `cause` is the file system's error.
 */
export class StateWriteError extends HvplugError {
  constructor(
    readonly vmId: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, 'StateWrite', options);
  }
}

/** An interceptor refused the call. */
export class VetoedError extends HvplugError {
  constructor(readonly method: string, reason: string) {
    super(`${method} vetoed: ${reason}`, 'Vetoed');
  }
}

/** Turns a JSON-RPC error response into the typed error it stands for. */
export function fromWireError(method: string, code: number, message: string, data: unknown): HvplugError {
  const name = errorCodeName(code);
  const parse = <K extends keyof typeof ErrorData>(k: K): z.core.util.SafeParseResult<z.output<(typeof ErrorData)[K]>> =>
    ErrorData[k].safeParse(data) as z.core.util.SafeParseResult<z.output<(typeof ErrorData)[K]>>;
  switch (name) {
    case 'NotSupported': {
      const d = parse('NotSupported');
      return new NotSupportedError(method, d.success ? d.data.reason : message, false);
    }
    case 'InvalidParams': {
      const d = parse('InvalidParams');
      return new InvalidParamsError(method, d.success ? d.data.issues : [{ path: [], message }]);
    }
    case 'InvalidConfig': {
      const d = parse('InvalidConfig');
      return new InvalidConfigError(message, d.success ? d.data.issues : []);
    }
    case 'VmNotFound': {
      const d = parse('VmNotFound');
      return new VmNotFoundError(d.success ? d.data.vmId : '?', message);
    }
    case 'InvalidState': {
      const d = parse('InvalidState');
      return d.success
        ? new InvalidStateError(message, d.data.vmId, d.data.current, d.data.required)
        : new InvalidStateError(message, '?', '?', []);
    }
    case 'AlreadyExists': {
      const d = parse('AlreadyExists');
      return new AlreadyExistsError(message, d.success ? d.data.id : '?');
    }
    case 'VmmFailure': {
      const d = parse('VmmFailure');
      return new VmmFailureError(message, d.success ? d.data.vmmMessage : message, d.success ? d.data.vmmCode : undefined);
    }
    case 'ResourceExhausted': {
      // The data may be absent (published without it at first); the message then says all there is.
      const d = parse('ResourceExhausted');
      const reason = d.success ? d.data?.reason : undefined;
      return new ResourceExhaustedError(reason && reason !== message ? `${method}: ${message}: ${reason}` : `${method}: ${message}`, method, reason);
    }
    case 'Timeout': {
      // A deadline of the plugin's own, not the host's: 0 when the plugin did not say how long it waited.
      const d = parse('Timeout');
      const ms = d.success ? d.data?.timeoutMs : undefined;
      return new TimeoutError(method, ms ?? 0, `${method} timed out in the plugin${ms === undefined ? '' : ` after ${ms} ms`}: ${message}`);
    }
    case 'Cancelled':
      return new CancelledError(method, message);
    case 'ProtocolVersionMismatch': {
      const d = parse('ProtocolVersionMismatch');
      return d.success ? new ProtocolVersionError(d.data.host, d.data.plugin) : new HvplugError(message, name);
    }
    case undefined:
      return new HvplugError(`${method}: ${message} (code ${code})`, 'InternalError');
    default:
      return new HvplugError(`${method}: ${message}`, name);
  }
}

export { ErrorCode };
