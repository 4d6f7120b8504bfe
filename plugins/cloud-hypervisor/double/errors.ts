// Error bodies and status codes as vmm/src/api/http/mod.rs produces them: the body is the JSON array of
// the error chain's messages (top error first), and the status comes from api_error_status_code().

/**
 * Which status a wrong-state request gets. The OpenAPI document promises codes (405 "not booted",
 * 404 "not created") that the implementation at the same commit does not send: it maps every
 * VmError except VmNotCreated/VmMissingConfig/unknown-device to 500. `documented` follows the
 * document wherever it names a code for the case; `implemented` follows the Rust source.
 */
export type StatusMode = 'documented' | 'implemented';

export class ApiFailure extends Error {
  constructor(
    readonly chain: readonly string[],
    readonly implemented: number,
    readonly documented: number = implemented,
  ) {
    super(chain.join(': '));
  }

  status(mode: StatusMode): number {
    return mode === 'documented' ? this.documented : this.implemented;
  }
}

/** ApiError's Display text per endpoint (vmm/src/api/mod.rs). */
export const ACTION_MESSAGE = {
  create: 'The VM could not be created',
  boot: 'The VM could not boot',
  delete: 'The VM could not be deleted',
  info: 'The VM info is not available',
  pause: 'The VM could not be paused',
  resume: 'The VM could not resume',
  shutdown: 'The VM could not shutdown',
  reboot: 'The VM could not reboot',
  snapshot: 'The VM could not be snapshotted',
  restore: 'The VM could not be restored',
  vmmShutdown: 'The VMM could not shutdown',
  resize: 'The VM could not be resized',
  addDevice: 'The device could not be added to the VM',
  removeDevice: 'The device could not be removed from the VM',
  addDisk: 'The disk could not be added to the VM',
  addFs: 'The fs could not be added to the VM',
  addNet: 'The network device could not be added to the VM',
  addVsock: 'The vsock device could not be added to the VM',
  receiveMigration: 'Error receiving migration',
  sendMigration: 'Error dispatching the migration worker',
} as const;

export type Action = keyof typeof ACTION_MESSAGE;

/** VmError Display texts (vmm/src/vm.rs) the double produces. */
export const VM_ERROR = {
  notCreated: 'VM is not created',
  missingConfig: 'VM config is missing',
  alreadyCreated: 'VM is already created',
  notRunning: 'VM is not running',
  configValidation: 'Failed to validate config',
  tooManyVsock: 'Too many virtio-vsock devices',
  pause: 'Cannot pause VM',
  resume: 'Cannot resume VM',
  snapshot: 'Cannot snapshot VM',
  snapshotSend: 'Cannot send VM snapshot',
  restore: 'Cannot restore VM',
  kernelFile: 'Cannot open kernel file',
  initramfsFile: 'Cannot open initramfs file',
  firmwareFile: 'Error manipulating firmware file',
  deviceManager: 'Error from device manager',
  cpuManager: 'Error from CPU manager',
  memoryManager: 'Memory manager error',
  migrating: "VM is currently migrating and can't be modified",
} as const;

/** MigratableError Display texts (vm-migration/src/lib.rs). */
export const MIGRATABLE_ERROR = {
  send: 'Failed to send migratable component snapshot',
  receive: 'Failed to receive migratable component snapshot',
  complete: 'Failed to complete migration for migratable component',
} as const;

/** An error raised by the internal API for one endpoint: ["Error from API", <action>, ...cause]. */
export function apiError(action: Action, cause: readonly string[], implemented: number, documented?: number): ApiFailure {
  return new ApiFailure(['Error from API', ACTION_MESSAGE[action], ...cause], implemented, documented);
}

/** HttpError variants raised before the internal API is reached. */
export const httpError = {
  badRequest: (): ApiFailure => new ApiFailure(['Bad Request'], 400),
  notFound: (): ApiFailure => new ApiFailure(['Not Found'], 404),
  deserialize: (detail: string): ApiFailure => new ApiFailure(['Failed to deserialize JSON', detail], 400),
};

/** An io::Error's Display text as Rust prints it in error chains ("No such file or directory (os error 2)"). */
export function osErrorMessage(err: unknown): string {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
  const known: Record<string, [string, number]> = {
    ENOENT: ['No such file or directory', 2],
    EACCES: ['Permission denied', 13],
    EEXIST: ['File exists', 17],
    ENOTDIR: ['Not a directory', 20],
    EISDIR: ['Is a directory', 21],
    ECONNREFUSED: ['Connection refused', 111],
    EADDRINUSE: ['Address in use', 98],
  };
  const hit = known[code];
  return hit ? `${hit[0]} (os error ${hit[1]})` : err instanceof Error ? err.message : String(err);
}
