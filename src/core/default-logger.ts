import { createRequire } from 'node:module';
import type { Bindings, Level, LevelWithSilent, Logger } from 'pino';

/**
 * The logger a PluginHost makes when its embedder gives none: pino to stderr, made only when something is
 * logged at an enabled level (or the embedder reaches for the logger itself). At the default level `warn` a
 * healthy host logs nothing, and pino (with its streams, ~8 MiB once loaded) never enters the embedder's
 * process. pino is CommonJS, so it is required in place and the first line is written at once, as before.
 */

const VALUES: Record<LevelWithSilent, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };
const LEVELS = new Set<PropertyKey>(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);

const isLevel = (k: PropertyKey): k is Level => LEVELS.has(k);

function loadPino(): typeof import('pino') {
  return createRequire(import.meta.url)('pino') as typeof import('pino');
}

/** A logger that is pino's own from its first enabled line; before that, disabled levels cost nothing. */
function deferred(make: () => Logger, level: LevelWithSilent): Logger {
  let real: Logger | undefined;
  const materialize = (): Logger => (real ??= make());
  const noop = (): void => undefined;
  // Only the members a silent logger can answer without pino are answered here; everything else is pino's.
  const handler: ProxyHandler<object> = {
    get(_target, key) {
      if (real) {
        const value = Reflect.get(real, key, real) as unknown;
        // Bound, as below: pino's child() is Object.create(this), and with `this` the proxy, each child's own
        // bindings went through the set trap into this logger's, for good: every plugin client (one per reconnect
        // attempt) added its plugin and address to every line the host logged after it.
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(real) : value;
      }
      if (key === 'level') return level;
      if (key === 'isLevelEnabled') return (l: string) => (VALUES[l as LevelWithSilent] ?? 0) >= VALUES[level];
      if (isLevel(key) && VALUES[key] < VALUES[level]) return noop;
      if (key === 'child') return (bindings: Bindings) => deferred(() => materialize().child(bindings), level);
      const logger = materialize();
      const value = Reflect.get(logger, key, logger) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(logger) : value;
    },
    set(_target, key, value) {
      return Reflect.set(materialize(), key, value);
    },
    has(_target, key) {
      return Reflect.has(materialize(), key);
    },
  };
  // The proxy stands for a pino Logger: every member it does not answer itself is the real logger's.
  return new Proxy({}, handler) as Logger;
}

/**
 * What the default logger holds while stderr is slower than the host logs (a pipe nobody reads fast): past it, lines
 * are dropped rather than buffered without bound.
 */
export const MAX_UNWRITTEN_LOG_BYTES = 16 * 1024 * 1024;

export function defaultLogger(level: LevelWithSilent): Logger {
  return deferred(() => {
    const pino = loadPino();
    return pino({ name: 'hvplug', level }, pino.destination({ dest: 2, maxLength: MAX_UNWRITTEN_LOG_BYTES }));
  }, level);
}
