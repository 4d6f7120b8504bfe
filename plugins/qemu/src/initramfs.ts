// Builds the default guest's initramfs: static busybox, the /init from guest-init.ts and the virtio
// kernel modules, as a gzip'd newc cpio, cached by content. A caller's script goes into a second,
// per-VM archive appended to the cached one (the kernel unpacks concatenated archives in order), so
// changing the script never rebuilds or copies the module set.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { type CpioEntry, parentDirs, writeCpioNewc } from './cpio.js';
import { GUEST_INIT, GUEST_MODULE_LIST, GUEST_SCRIPT_PATH } from './guest-init.js';
import { DEFAULT_GUEST_MODULES, readModuleUncompressed, resolveModules } from './kernel-modules.js';

export { GUEST_EXIT_MARKER, GUEST_READY_MARKER, GUEST_SCRIPT_PATH } from './guest-init.js';

export interface DefaultKernel {
  readonly path: string;
  /** The `uname -r` of that kernel, taken from the file name: its modules are /lib/modules/<version>. */
  readonly version: string;
}

export class InitramfsError extends Error {
  override readonly name = 'InitramfsError';
}

/** Orders "6.1.0-9-amd64" before "6.1.0-10-amd64": numbers compare as numbers. */
export function compareKernelVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** The newest /boot/vmlinuz-<version>. */
export async function findDefaultKernel(bootDir = '/boot'): Promise<DefaultKernel> {
  const names = await readdir(bootDir).catch(() => [] as string[]);
  const versions = names
    .filter((n) => n.startsWith('vmlinuz-'))
    .map((n) => n.slice('vmlinuz-'.length))
    .sort(compareKernelVersions);
  const version = versions.at(-1);
  if (version === undefined) throw new InitramfsError(`no ${bootDir}/vmlinuz-* found (apt-get install linux-image-amd64)`);
  return { path: join(bootDir, `vmlinuz-${version}`), version };
}

export function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'hvplug', 'qemu');
}

export interface InitramfsOptions {
  /** Where built archives are kept. Default: $XDG_CACHE_HOME/hvplug/qemu. */
  readonly cacheDir?: string;
  /** Default: the version of the newest /boot/vmlinuz-*. */
  readonly kernelVersion?: string;
  /** Default: /lib/modules/<kernelVersion>. */
  readonly modulesDir?: string;
  /** A statically linked busybox. Default: /bin/busybox. */
  readonly busybox?: string;
  /** Module names to include with their dependencies. Default: DEFAULT_GUEST_MODULES. */
  readonly modules?: readonly string[];
}

export interface Initramfs {
  readonly path: string;
  readonly kernelVersion: string;
  /** Modules in the order /init loads them. */
  readonly modules: readonly string[];
  /** False when this call built the archive, true when it was already in the cache. */
  readonly cached: boolean;
}

const sha256 = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex');

/** A 64-bit little-endian ELF without a PT_INTERP program header: it needs no dynamic loader. */
export function isStaticElf64(bytes: Buffer): boolean {
  if (bytes.length < 64 || !bytes.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) return false;
  if (bytes[4] !== 2 || bytes[5] !== 1) return false;
  const phoff = Number(bytes.readBigUInt64LE(0x20));
  const phentsize = bytes.readUInt16LE(0x36);
  const phnum = bytes.readUInt16LE(0x38);
  const PT_INTERP = 3;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > bytes.length) return false;
    if (bytes.readUInt32LE(at) === PT_INTERP) return false;
  }
  return true;
}

const BASE_DIRS = ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'etc', 'etc/hvplug', 'proc', 'sys', 'dev', 'tmp', 'run', 'root', 'lib', 'lib/modules', 'mnt'];

/** Builds the base initramfs, or returns the cached one built from identical inputs. */
export async function buildInitramfs(opts: InitramfsOptions = {}): Promise<Initramfs> {
  const kernelVersion = opts.kernelVersion ?? (await findDefaultKernel()).version;
  const modulesDir = opts.modulesDir ?? join('/lib/modules', kernelVersion);
  const busyboxPath = opts.busybox ?? '/bin/busybox';
  const cacheDir = opts.cacheDir ?? defaultCacheDir();

  const busybox = await readFile(busyboxPath).catch(() => {
    throw new InitramfsError(`${busyboxPath} not found (apt-get install busybox-static)`);
  });
  if (!isStaticElf64(busybox)) throw new InitramfsError(`${busyboxPath} is not a static executable (apt-get install busybox-static)`);
  const wanted = opts.modules ?? DEFAULT_GUEST_MODULES;
  if (wanted.length > 0 && !existsSync(join(modulesDir, 'modules.dep'))) {
    throw new InitramfsError(`${modulesDir}/modules.dep not found: the modules of kernel ${kernelVersion} are not installed`);
  }
  const resolved = wanted.length > 0 ? await resolveModules(modulesDir, wanted) : { load: [], builtin: [] };
  const moduleFiles = await Promise.all(resolved.load.map(async (m) => ({ ...m, raw: await readFile(join(modulesDir, m.relPath)) })));

  // The key covers every input byte, so a rebuilt kernel package with the same version is noticed.
  const key = sha256(
    JSON.stringify({ init: sha256(GUEST_INIT), busybox: sha256(busybox), modules: moduleFiles.map((m) => [m.relPath, sha256(m.raw)]) }),
  ).slice(0, 16);
  const path = join(cacheDir, `initramfs-${kernelVersion}-${key}.cpio.gz`);
  const result = { path, kernelVersion, modules: moduleFiles.map((m) => m.name) };
  if (existsSync(path)) return { ...result, cached: true };

  // Stored uncompressed and flat under lib/modules/<name>.ko: insmod takes a path, not a name.
  const entries: CpioEntry[] = BASE_DIRS.map((d) => ({ kind: 'dir', path: d }));
  entries.push({ kind: 'chardev', path: 'dev/console', major: 5, minor: 1 });
  entries.push({ kind: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 });
  entries.push({ kind: 'symlink', path: 'bin/sh', target: 'busybox' });
  entries.push({ kind: 'file', path: 'init', data: Buffer.from(GUEST_INIT), mode: 0o755 });
  const list: string[] = [];
  for (const m of moduleFiles) {
    const data = await readModuleUncompressed(modulesDir, m.relPath);
    entries.push({ kind: 'file', path: `lib/modules/${m.name}.ko`, data });
    list.push(`${m.name} ${m.name}.ko`);
  }
  entries.push({ kind: 'file', path: GUEST_MODULE_LIST, data: Buffer.from(list.map((l) => `${l}\n`).join('')) });

  await mkdir(cacheDir, { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, gzipSync(writeCpioNewc(entries)));
  // rename is atomic: concurrent builders each write their own temp file and the last one wins.
  await rename(tmp, path);
  return { ...result, cached: false };
}

/** A gzip'd archive holding only the caller's script at GUEST_SCRIPT_PATH. */
export function guestScriptArchive(script: string): Buffer {
  const entries: CpioEntry[] = parentDirs(GUEST_SCRIPT_PATH).map((d) => ({ kind: 'dir', path: d }));
  const body = script.startsWith('#!') ? script : `#!/bin/sh\n${script}`;
  entries.push({ kind: 'file', path: GUEST_SCRIPT_PATH, data: Buffer.from(body.endsWith('\n') ? body : `${body}\n`), mode: 0o755 });
  return gzipSync(writeCpioNewc(entries));
}

/**
 * Writes `out`: the base initramfs followed by an archive with `script`, which /init runs after the
 * ready marker (it powers the guest off when the script ends). Without a script, /init starts a shell.
 */
export async function writeGuestInitrd(base: string, out: string, script?: string): Promise<string> {
  const parts: Buffer[] = [await readFile(base)];
  if (script !== undefined) parts.push(guestScriptArchive(script));
  await writeFile(out, Buffer.concat(parts));
  return out;
}
