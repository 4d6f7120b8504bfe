#!/usr/bin/env node
import { existsSync, realpathSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * The hvplug executable. Its work is cli.ts's; this file only picks where that code is loaded from: the CLI's
 * bundle (dist/cli/, which `npm run build:ts` writes with scripts/bundle-cli.mjs), a few files that node reads at
 * once, when it is there; else the modules tsc wrote, one file at a time. Everything a start loads costs time on
 * every command, most of all on those that only ask the daemon (bench figure 9).
 */
const BUNDLE = new URL('../../cli/hvplug.js', import.meta.url);
/**
 * The fast path of `pause` and `resume` through a daemon (fast.ts, bundled alone with what it needs of the method
 * table written in by scripts/bundle-cli.mjs): tried first when the command line names one of them, and handing
 * anything it does not run to the full CLI. test/unit/cli-fast.test.ts holds this list to fast-facts.ts's.
 */
const FAST = new URL('../../cli/fast.js', import.meta.url);
export const FAST_COMMANDS: readonly string[] = ['pause', 'resume'];

interface FastModule {
  run(argv: readonly string[]): Promise<number | undefined>;
}

function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => (stream.writable ? stream.write('', () => resolve()) : resolve()));
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  let pipeClosed = false;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' || pipeClosed) return;
    pipeClosed = true;
    // The reader went away (`hvplug run | head`): a run stops as on SIGTERM, so its VM is still cleaned
    // up; any other command just finishes, its further output dropped.
    if (process.listenerCount('SIGTERM') > 0) process.kill(process.pid, 'SIGTERM');
  });
  const argv = process.argv.slice(2);
  let code: number | undefined;
  if (argv.some((a) => FAST_COMMANDS.includes(a)) && existsSync(fileURLToPath(FAST))) code = await ((await import(FAST.href)) as FastModule).run(argv);
  if (code === undefined) {
    const cli = (await import(existsSync(fileURLToPath(BUNDLE)) ? BUNDLE.href : './cli.js')) as typeof import('./cli.js');
    code = await cli.main(argv);
  }
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  // Exit explicitly: a plugin or timer left behind must not keep a finished command alive.
  process.exit(code);
}
