import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

const MiB = 2 ** 20;

/** Whether this system shows a process's resident set in /proc (Linux); the footprint figures need it. */
export const hasProcfs = (): boolean => existsSync('/proc/self/status');

/** Resident set of a live process, MiB, from /proc/<pid>/status (VmRSS is in kB). */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return (Number(kb) * 1024) / MiB;
}

/**
 * How long a process is left alone after its last piece of work before its RSS is read: what it touched is
 * resident by then, and every process of a figure waits the same.
 */
export const SETTLE_MS = 250;

export const settle = (): Promise<void> => new Promise((r) => setTimeout(r, SETTLE_MS));

// Reads one line, answers one byte, then waits for EOF: an idle node process that has done the least I/O a
// plugin does before its first call.
const IDLE_READER = "process.stdin.once('data', () => process.stdout.write('.'))";

/** RSS (MiB) of an idle `node` that has read one line from stdin and answered it. */
export function idleNodeRss(): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', IDLE_READER], { stdio: ['pipe', 'pipe', 'inherit'] });
    child.once('error', reject);
    child.stdin.on('error', () => undefined);
    child.stdout.once('data', () => {
      void settle()
        .then(() => rssOf(child.pid as number))
        .then(resolve, reject)
        .finally(() => child.stdin.end());
    });
    child.stdin.write('one line\n');
  });
}

// gc() twice so that what is left is what the import keeps, not its garbage; the number is bytes.
const IMPORT_PROBE = `
const spec = process.argv[1];
if (spec) await import(spec);
globalThis.gc(); globalThis.gc();
process.stdout.write(String(process.memoryUsage().rss));
`;

/**
 * RSS (MiB) of `node --expose-gc` after importing `specifier` (resolved from `cwd`, as an embedder's code
 * would) and collecting garbage; no specifier: the same process importing nothing.
 */
export function importRss(cwd: string, specifier?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const args = ['--expose-gc', '--input-type=module', '-e', IMPORT_PROBE, ...(specifier ? [specifier] : [])];
    const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2_000)));
    child.once('error', reject);
    child.once('exit', (code) => {
      const bytes = Number(out);
      if (code === 0 && out !== '' && Number.isFinite(bytes)) resolve(bytes / MiB);
      else reject(new Error(`import probe for ${specifier ?? '(nothing)'} exited ${code}: ${err.trim()}`));
    });
  });
}
