/**
 * Counts what would have killed a real host or plugin process: an exception no one caught, a rejection no one
 * handled (Node's default for both is to exit). Installed once per fuzz run; each case looks at what arrived
 * while it ran.
 */
export class CrashWatch {
  readonly crashes: string[] = [];
  private readonly onUncaught = (err: unknown): void => void this.crashes.push(`uncaught exception: ${describe(err)}`);
  private readonly onUnhandled = (err: unknown): void => void this.crashes.push(`unhandled rejection: ${describe(err)}`);

  install(): this {
    process.on('uncaughtException', this.onUncaught);
    process.on('unhandledRejection', this.onUnhandled);
    return this;
  }

  uninstall(): void {
    process.off('uncaughtException', this.onUncaught);
    process.off('unhandledRejection', this.onUnhandled);
  }

  /** The crashes since `mark` (a length of `crashes` taken earlier). */
  since(mark: number): string[] {
    return this.crashes.slice(mark);
  }
}

export function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}${err.stack ? `\n${err.stack.split('\n').slice(1, 6).join('\n')}` : ''}`;
  return String(err);
}

/** `turns` turns of the event loop, or fewer if `done` comes first. */
export async function turns(n: number, done: () => boolean = () => false): Promise<void> {
  for (let i = 0; i < n && !done(); i++) await new Promise<void>((r) => setImmediate(r));
}

/**
 * Waits for `done` for at most `ms`; true if it came. Looks again after each event-loop turn at first (most
 * waits here end within a few), then every millisecond.
 */
export async function within(ms: number, done: () => boolean): Promise<boolean> {
  const end = performance.now() + ms;
  for (let i = 0; !done(); i++) {
    if (performance.now() > end) return false;
    await new Promise<void>((r) => (i < 100 ? setImmediate(r) : setTimeout(r, 1)));
  }
  return true;
}
