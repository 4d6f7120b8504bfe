// Picks kernel modules and their dependencies out of /lib/modules/<version>, in load order, as
// uncompressed .ko bytes: the guest loads them with busybox `insmod`, which calls init_module() on
// the bytes it is given and understands neither compression nor modules.dep.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';

const execFileP = promisify(execFile);

/** What the guest needs for virtio devices (cold- and hot-plugged) on q35 (PCI) and microvm (MMIO), and its power button. */
export const DEFAULT_GUEST_MODULES: readonly string[] = [
  'virtio_pci',
  'virtio_mmio',
  'virtio_blk',
  'virtio_net',
  'virtio_console',
  'virtio_rng',
  'virtio_balloon',
  'vmw_vsock_virtio_transport',
  'virtiofs',
  // The ACPI power button as an input device: the guest powers off when vm/stop presses it.
  'evdev',
  'button',
];

export interface ResolvedModule {
  /** Canonical name: file name without .ko and compression suffix, dashes as underscores. */
  readonly name: string;
  /** Path relative to the modules directory, as in modules.dep. */
  readonly relPath: string;
}

export interface ModuleResolution {
  /** Dependencies before dependents: the order to insmod them in. */
  readonly load: readonly ResolvedModule[];
  /** Requested modules that the kernel has built in: nothing to load. */
  readonly builtin: readonly string[];
}

export class KernelModuleError extends Error {
  override readonly name = 'KernelModuleError';
}

const canonical = (name: string): string => name.replace(/-/g, '_');

export function moduleNameOf(relPath: string): string {
  const base = relPath.slice(relPath.lastIndexOf('/') + 1);
  return canonical(base.replace(/\.ko(\.(xz|zst|gz))?$/, ''));
}

/** Parses modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko" per line) into name → {path, deps}. */
export function parseModulesDep(text: string): Map<string, { relPath: string; deps: string[] }> {
  const out = new Map<string, { relPath: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const relPath = line.slice(0, colon).trim();
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter(Boolean);
    out.set(moduleNameOf(relPath), { relPath, deps });
  }
  return out;
}

/** Resolves `wanted` with every dependency, each once, dependencies first. */
export async function resolveModules(modulesDir: string, wanted: readonly string[]): Promise<ModuleResolution> {
  const dep = parseModulesDep(await readFile(join(modulesDir, 'modules.dep'), 'utf8'));
  const builtinText = await readFile(join(modulesDir, 'modules.builtin'), 'utf8').catch(() => '');
  const builtinNames = new Set(builtinText.split('\n').filter(Boolean).map(moduleNameOf));
  const load: ResolvedModule[] = [];
  const builtin: string[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (name: string, via: string): void => {
    if (done.has(name)) return;
    const entry = dep.get(name);
    if (!entry) {
      if (builtinNames.has(name)) {
        builtin.push(name);
        done.add(name);
        return;
      }
      throw new KernelModuleError(`kernel module ${name}${via} is neither in ${modulesDir}/modules.dep nor built in`);
    }
    if (visiting.has(name)) throw new KernelModuleError(`dependency cycle through kernel module ${name}`);
    visiting.add(name);
    for (const d of entry.deps) visit(moduleNameOf(d), ` (needed by ${name})`);
    visiting.delete(name);
    done.add(name);
    load.push({ name, relPath: entry.relPath });
  };
  for (const w of wanted) visit(canonical(w), '');
  return { load, builtin };
}

async function decompressWith(tool: string, args: string[], path: string, pkg: string): Promise<Buffer> {
  try {
    const { stdout } = await execFileP(tool, [...args, path], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const code = typeof e === 'object' && e !== null && 'code' in e ? String(e.code) : '';
    if (code === 'ENOENT') throw new KernelModuleError(`${path} is compressed and \`${tool}\` is not installed (apt-get install ${pkg})`);
    throw new KernelModuleError(`could not decompress ${path} with ${tool}: ${String(e)}`);
  }
}

/**
 * The module's bytes, uncompressed. Node has gzip but no xz or zstd, so those go through the `xz`
 * and `zstd` command-line tools at build time (Debian ships uncompressed modules up to kernel 6.1).
 */
export async function readModuleUncompressed(modulesDir: string, relPath: string): Promise<Buffer> {
  const path = join(modulesDir, relPath);
  if (relPath.endsWith('.ko')) return readFile(path);
  if (relPath.endsWith('.ko.gz')) return gunzipSync(await readFile(path));
  if (relPath.endsWith('.ko.xz')) return decompressWith('xz', ['-dc'], path, 'xz-utils');
  if (relPath.endsWith('.ko.zst')) return decompressWith('zstd', ['-dcq'], path, 'zstd');
  throw new KernelModuleError(`unknown kernel module format: ${path}`);
}
