import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, open, realpath, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as z from 'zod/mini';
import { formatIssues, toIssues } from 'hvplug/protocol';
import { IntegrityError, PluginSpawnError, UnreadableFileError } from '../errors/index.js';
import { isExecutable, resolveExecutable } from './executable.js';
import { openRegular } from './small-file.js';

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** What is kept of a pinned file to look for a launcher's manifest line: a launcher is a few hundred bytes. */
const HEAD_BYTES = 4 * 1024;
/** A manifest names two files; a bigger file is not one, and is not read into memory. */
const MAX_MANIFEST_BYTES = 64 * 1024;
/** The first two lines of a launcher written by scripts/bundle.mjs. */
const LAUNCHER_HEAD = /^#!\/bin\/sh\n# hvplug-manifest (\S+) sha256=([0-9a-f]{64})\n/;

const FileName = z.string().check(z.regex(/^[A-Za-z0-9_][A-Za-z0-9._-]*$/, 'a file name in the launcher directory'));
const ListedFile = z.strictObject({ file: FileName, sha256: z.string().check(z.regex(/^[0-9a-f]{64}$/)) });
/** hvplug-plugin-<name>.manifest.json, written by scripts/bundle.mjs next to the launcher. */
const LauncherManifest = z.strictObject({
  hvplugLauncher: z.literal(1),
  /** The node that built the snapshot: the only one that can load it. */
  node: z.string().check(z.refine(isAbsolute, 'an absolute path')),
  bundle: ListedFile,
  /** Absent when the plugin could not be snapshotted; its file is absent where the package was installed. */
  snapshot: z.optional(ListedFile),
});

const MISSING = 'unknown (no such file)';

/**
 * Checks a pinned executable before anything of it runs, and returns the program to exec in its place.
 *
 * A plugin launcher (scripts/bundle.mjs) names its manifest by hash, and the manifest names the bundle and the
 * snapshot by hash: the pin of the launcher covers them all. The launcher itself is never run: a sh script that
 * finds its files by path would load whatever is there when it runs, not what was checked. Each listed file is
 * copied, and hashed as it is copied, into a directory of the host's own, and node is run on the copies: nothing is
 * read from the plugin's directory after it was checked.
 *
 * Any other file (a native binary, a bundle with a shebang) is run where it is once checked, so someone who can
 * write it or its directory between the check and the exec can still swap it.
 */
export async function verifyPin(path: string, expected: string, ctx: { pathEnv: string | undefined; runtimeDir: string }): Promise<string> {
  const { actual, head } = await hashWithHead(path);
  if (actual !== expected.toLowerCase()) throw new IntegrityError(path, expected, actual);
  const launcher = LAUNCHER_HEAD.exec(head);
  if (!launcher) return path;
  const [, manifestName = '', manifestSha = ''] = launcher;
  if (!FileName.safeParse(manifestName).success) throw new PluginSpawnError(`${path} names its manifest ${manifestName}, not a file next to it`);
  // Next to the launcher itself, as the launcher finds its files when a PATH install links to it.
  const dir = dirname(await realpath(path));
  const manifestPath = join(dir, manifestName);
  const bytes = await readCapped(manifestPath, MAX_MANIFEST_BYTES, manifestSha);
  if (sha256(bytes) !== manifestSha) throw new IntegrityError(manifestPath, manifestSha, sha256(bytes));
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new PluginSpawnError(`${manifestPath} is not JSON: ${(err as Error).message}`);
  }
  const manifest = LauncherManifest.safeParse(json);
  if (!manifest.success) throw new PluginSpawnError(`${manifestPath} is not a launcher manifest: ${formatIssues(toIssues(manifest.error))}`);
  const { node, bundle, snapshot } = manifest.data;
  const store = await privateDir(join(ctx.runtimeDir, 'pinned'));
  const bundleCopy = await verifiedCopy(join(dir, bundle.file), bundle.sha256, store, '.mjs');
  if (!bundleCopy) throw new IntegrityError(join(dir, bundle.file), bundle.sha256, MISSING);
  // Like the launcher: a missing snapshot, or a missing node to load it, means the bundle on the node on PATH.
  const blobCopy = snapshot && (await verifiedCopy(join(dir, snapshot.file), snapshot.sha256, store, '.blob'));
  const argv = blobCopy && (await isExecutable(node)) ? [node, '--snapshot-blob', blobCopy, '--'] : [await resolveExecutable('node', ctx.pathEnv, 'the launcher\'s interpreter'), bundleCopy];
  return writeProgram(store, argv);
}

/** A file a launcher's manifest names, looked at after its plugin died: a snapshot is a few MiB, and hashing this many takes a second. */
const MAX_EXAMINED_BYTES = 512 * 1024 * 1024;

/**
 * Why a plugin launcher (scripts/bundle.mjs) may have died before answering initialize, as far as its files tell: one
 * that is not the one listed for it. A snapshot cut short (a copy interrupted, a full disk) kills node as it loads it,
 * by a signal and without a word on stderr. Undefined when `path` is no launcher, or its files are as listed (or
 * missing, which the launcher copes with or node reports). Looked at only after such a death: a start pays nothing.
 */
export async function launcherDamage(path: string): Promise<string | undefined> {
  const head = await examined(path, HEAD_BYTES, (fh) => fh.readFile());
  const launcher = head instanceof Unfit ? null : LAUNCHER_HEAD.exec(head.toString('latin1'));
  if (!launcher) return undefined;
  const [, manifestName = '', manifestSha = ''] = launcher;
  if (!FileName.safeParse(manifestName).success) return undefined;
  const dir = dirname(await realpath(path));
  const manifestPath = join(dir, manifestName);
  const bytes = await examined(manifestPath, MAX_MANIFEST_BYTES, (fh) => fh.readFile());
  if (bytes instanceof Unfit) return bytes.missing ? undefined : `its manifest ${manifestPath} is ${bytes.why}`;
  if (sha256(bytes) !== manifestSha) return `its manifest ${manifestPath} is not the one the launcher names (SHA-256 ${sha256(bytes)}, the launcher says ${manifestSha})`;
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  const manifest = LauncherManifest.safeParse(json);
  if (!manifest.success) return undefined;
  const { snapshot, bundle } = manifest.data;
  const listed = [...(snapshot ? [{ what: 'startup snapshot', ...snapshot }] : []), { what: 'bundle', ...bundle }];
  const found: string[] = [];
  for (const { what, file, sha256: expected } of listed) {
    const at = join(dir, file);
    const actual = await examined(at, MAX_EXAMINED_BYTES, hashOf);
    if (actual instanceof Unfit) {
      if (!actual.missing) found.push(`its ${what} ${at} is ${actual.why}`);
      continue;
    }
    if (actual === expected) continue;
    const remedy = what === 'bundle' ? 'build or install the plugin again' : 'build the plugin again, or remove that file and the launcher starts the bundle';
    found.push(`its ${what} ${at} is not the one its manifest names (SHA-256 ${actual}, the manifest says ${expected}): damaged or replaced since it was built; ${remedy}`);
  }
  return found.length > 0 ? found.join('; ') : undefined;
}

/** What a file examined is instead of a regular file of the size allowed. */
class Unfit {
  constructor(
    readonly why: string,
    readonly missing = false,
  ) {}
}

/** `read` of the file at `path` when it is a regular file of at most `cap` bytes (openRegular); else what it is instead. */
async function examined<T>(path: string, cap: number, read: (fh: FileHandle) => Promise<T>): Promise<T | Unfit> {
  let opened: Awaited<ReturnType<typeof openRegular>>;
  try {
    opened = await openRegular(path, cap);
  } catch (err) {
    return new Unfit(err instanceof UnreadableFileError ? err.reason : `unreadable (${(err as Error).message})`);
  }
  if (opened === undefined) return new Unfit('missing', true);
  try {
    return await read(opened.fh);
  } finally {
    await opened.fh.close();
  }
}

async function hashOf(fh: FileHandle): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fh.createReadStream({ autoClose: false }) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}

/** The file's SHA-256 and its first bytes, from one read: what is looked at is what was hashed. */
async function hashWithHead(path: string): Promise<{ actual: string; head: string }> {
  const hash = createHash('sha256');
  const head: Buffer[] = [];
  let kept = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    if (kept < HEAD_BYTES) {
      const part = chunk.subarray(0, HEAD_BYTES - kept);
      head.push(part);
      kept += part.length;
    }
  }
  return { actual: hash.digest('hex'), head: Buffer.concat(head).toString('latin1') };
}

const isMissing = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT';

async function readCapped(path: string, cap: number, expected: string): Promise<Buffer> {
  const file = await open(path, 'r').catch((err: unknown) => {
    throw isMissing(err) ? new IntegrityError(path, expected, MISSING) : err;
  });
  try {
    const buf = Buffer.alloc(cap + 1);
    let length = 0;
    while (length <= cap) {
      const { bytesRead } = await file.read(buf, length, cap + 1 - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > cap) throw new PluginSpawnError(`${path} is over ${cap} bytes: not a launcher manifest`);
    return buf.subarray(0, length);
  } finally {
    await file.close();
  }
}

/**
 * The host's copies of pinned plugins' files. Whoever can write here can change what a pinned plugin runs, so it
 * must be this user's alone (the host makes its runtime directories so).
 */
async function privateDir(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) {
    throw new PluginSpawnError(`${dir} holds the checked copies of pinned plugins, so it must be a directory of this user's alone`);
  }
  return dir;
}

/**
 * Copies `src` into `store` as <sha256><ext>, hashing the bytes it copies, and returns the copy if they are the
 * expected ones, undefined if there is no `src`. Named by content, the copies of one plugin version are one set
 * however often it starts.
 */
async function verifiedCopy(src: string, expected: string, store: string, ext: string): Promise<string | undefined> {
  const dest = join(store, `${expected}${ext}`);
  const tmp = join(store, `.${randomUUID()}`);
  const hash = createHash('sha256');
  const tee = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(src), tee, createWriteStream(tmp, { mode: 0o400, flags: 'wx' }));
    const actual = hash.digest('hex');
    if (actual !== expected) throw new IntegrityError(src, expected, actual);
    await rename(tmp, dest);
    return dest;
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  } finally {
    await rm(tmp, { force: true });
  }
}

const shellQuote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

/** An executable that runs `argv` with the plugin's arguments after it: what the client execs for a pinned launcher. */
async function writeProgram(store: string, argv: readonly string[]): Promise<string> {
  const text = `#!/bin/sh\n# Written by the hvplug host: runs the copies it checked against a pin.\nexec ${argv.map(shellQuote).join(' ')} "$@"\n`;
  const dest = join(store, `${sha256(text)}.sh`);
  const tmp = join(store, `.${randomUUID()}`);
  try {
    const file = await open(tmp, 'wx', 0o500);
    try {
      await file.writeFile(text);
    } finally {
      await file.close();
    }
    await rename(tmp, dest);
    return dest;
  } finally {
    await rm(tmp, { force: true });
  }
}
