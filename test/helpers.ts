import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import pino from 'pino';
import { builtinPluginPath } from 'hvplug';
import { proc } from 'hvplug/plugin-sdk';
import { root } from '../scripts/bundle.mjs';

export const fixture = (name: string): string => join(root, 'test/fixtures/dist', `${name}.mjs`);
/** What the host runs for a bundled plugin: its launcher, which starts the plugin's startup snapshot. */
export const pluginExecutable = builtinPluginPath;

/** A process is alive when /proc has it and it is not a zombie. */
export const alive = proc.isAlive;

/** Live processes whose command line names one of `dirs` (VMMs keep their sockets and logs there). */
export function processesUnder(dirs: readonly string[]): number[] {
  return proc.pids().filter((pid) => {
    const cmdline = proc.cmdline(pid)?.join('\0') ?? '';
    return dirs.some((d) => cmdline.includes(d)) && alive(pid);
  });
}

/** On the command line of every guest process of the example plugin (its guest-program.ts; tests drive the plugin from outside). */
export const EXAMPLE_GUEST_TITLE = 'hvplug-example-guest';

export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

const temps: string[] = [];

/** Turns of the event loop (setImmediate, which no test fakes) until `done`, or fails: for in-process streams. */
export async function untilTurns(done: () => boolean, what: string, turns = 2_000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (done()) return;
    await new Promise<void>((r) => setImmediate(r));
  }
  throw new Error(`not within ${turns} event-loop turns: ${what}`);
}

export async function tempDir(prefix = 'hvplug-test-'): Promise<string> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  temps.push(path);
  return path;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(temps.splice(0).map((p) => rm(p, { recursive: true, force: true })));
}

/** A logger that keeps what it was given, for assertions on re-emitted plugin logs. */
export function memoryLogger(): { logger: pino.Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const logger = pino({ level: 'trace' }, { write: (s: string) => void chunks.push(s) });
  return { logger, lines: () => chunks.map((c) => JSON.parse(c) as Record<string, unknown>) };
}

/** The built CLI, as `npx hvplug` runs it. */
export const CLI = join(root, 'dist/src/cli/main.js');

async function newestSource(dir: string): Promise<number> {
  let newest = 0;
  for (const e of await readdir(join(root, dir), { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name.endsWith('.ts')) newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}

/** `npm test` builds first; a bare `vitest run` after editing src/ gets a fresh build here rather than a stale CLI. */
export async function ensureCliBuilt(): Promise<void> {
  const dirs = ['src/cli', 'src/core', 'src/shim', 'src/protocol', 'src/conformance', 'src/daemon', 'src/plugin-sdk', 'src/transport'];
  const sources = Math.max(...(await Promise.all(dirs.map(newestSource))));
  if (existsSync(CLI) && statSync(CLI).mtimeMs >= sources) return;
  await execa('npm', ['run', '--silent', 'build:ts'], { cwd: root });
}

/** The counter values the example plugin's guest wrote on a console log, in order (none if there is no file). */
export async function consoleTicks(path: string): Promise<number[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return [...text.matchAll(/^tick (\d+)$/gm)].map((m) => Number(m[1]));
}

/**
 * Each line of `input` that parses as JSON, handed to `handle` as a test fixture's process wrote it (T: what that
 * fixture says it writes); other lines (a stray log line) are skipped.
 */
export function onJsonLines<T>(input: Readable, handle: (line: T) => void): void {
  createInterface({ input }).on('line', (text) => {
    let line: T;
    try {
      line = JSON.parse(text) as T;
    } catch {
      return;
    }
    handle(line);
  });
}
