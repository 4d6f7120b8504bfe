import { ErrorCode, formatIssues, type ErrorCodeName, type Issue } from 'hvplug/protocol';

/**
 * What a handler throws to answer with one of the protocol's error codes. Anything else thrown becomes
 * InternalError with its message.
 */
export class PluginError extends Error {
  override readonly name = 'PluginError';
  constructor(
    readonly codeName: ErrorCodeName,
    message: string,
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
  }

  get code(): number {
    return ErrorCode[this.codeName];
  }
}

const invalidParams = (method: string, issues: Issue[]): PluginError =>
  new PluginError('InvalidParams', `${method}: ${formatIssues(issues)}`, { method, issues });

/** Constructors for the errors handlers raise most, with the data the host expects. */
export const errors = {
  invalidParams,
  /** A deviceId the VM does not have: InvalidParams at `deviceId`, as the conformance suite expects. */
  deviceNotFound: (method: string, vmId: string, deviceId: string): PluginError =>
    invalidParams(method, [{ path: ['deviceId'], message: `VM ${vmId} has no device ${deviceId}` }]),
  vmNotFound: (vmId: string): PluginError => new PluginError('VmNotFound', `no VM ${vmId}`, { vmId }),
  invalidState: (vmId: string, current: string, required: readonly string[]): PluginError =>
    new PluginError('InvalidState', `VM ${vmId} is ${current}; this needs ${required.join(' or ')}`, {
      vmId,
      current,
      required: [...required],
    }),
  alreadyExists: (id: string): PluginError => new PluginError('AlreadyExists', `${id} already exists`, { id }),
  notSupported: (method: string, reason: string): PluginError =>
    new PluginError('NotSupported', `${method}: ${reason}`, { method, reason }),
  invalidConfig: (issues: Issue[]): PluginError => new PluginError('InvalidConfig', `invalid config: ${formatIssues(issues)}`, { issues }),
  vmmFailure: (message: string, vmmCode?: string | number): PluginError =>
    new PluginError('VmmFailure', message, vmmCode === undefined ? { vmmMessage: message } : { vmmMessage: message, vmmCode }),
  resourceExhausted: (message: string): PluginError => new PluginError('ResourceExhausted', message),
  /** The host cancelled the call (or its deadline passed) before it was done. */
  cancelled: (method?: string): PluginError =>
    new PluginError('Cancelled', method === undefined ? 'the call was cancelled' : `${method} was cancelled`, method === undefined ? undefined : { method }),
};

/** Whether err is what an aborted signal throws (fetch, timers, child processes, AbortSignal.throwIfAborted). */
export function isAbort(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

/**
 * A failure as the protocol error to answer: a PluginError stands, an abort is Cancelled, and the rest goes
 * through `translate` (a VMM's own errors, VmmFailure most often); what it leaves becomes InternalError.
 */
export function translateError(err: unknown, translate: (err: unknown) => PluginError | undefined): unknown {
  if (err instanceof PluginError) return err;
  if (isAbort(err)) return errors.cancelled();
  return translate(err) ?? err;
}

/** Runs a call to the VMM, its failure translated by translateError. */
export async function translating<T>(fn: () => Promise<T>, translate: (err: unknown) => PluginError | undefined): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw translateError(err, translate);
  }
}
