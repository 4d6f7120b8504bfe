/** A mistake on the command line (unknown flag, bad value, missing argument): one line, exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * A run that went wrong for a reason that is not an hvplug API error (the guest crashed, the plugin
 * gave up): its message is the whole story, exit status 1.
 */
export class CliFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliFailure';
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
