// Disk images with qemu-img, and cloud-init NoCloud seeds. The seed is a real FAT12 volume labelled
// "cidata" (what cloud-init looks for), produced by qemu-img converting QEMU's vvfat view of a directory
// holding user-data and meta-data: no genisoimage or mkfs.vfat needed on the host.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { errors } from 'hvplug/plugin-sdk';
import type { ParamsOf, ResultInputOf } from 'hvplug/protocol';

const run = promisify(execFile);

async function qemuImg(args: string[]): Promise<string> {
  try {
    return (await run('qemu-img', args, { maxBuffer: 4 * 1024 * 1024 })).stdout;
  } catch (e) {
    const stderr = typeof e === 'object' && e !== null && 'stderr' in e ? String(e.stderr).trim() : '';
    const msg = e instanceof Error ? e.message : String(e);
    throw errors.vmmFailure(`qemu-img ${args.join(' ')}: ${stderr || msg}`);
  }
}

async function imageInfo(path: string): Promise<{ format: string; sizeBytes: number }> {
  const info = JSON.parse(await qemuImg(['info', '--output=json', path])) as { format: string; 'virtual-size': number };
  return { format: info.format, sizeBytes: info['virtual-size'] };
}

export async function ensureImage(p: ParamsOf<'image/ensure'>): Promise<ResultInputOf<'image/ensure'>> {
  if (existsSync(p.path)) {
    const info = await imageInfo(p.path);
    if (info.format !== 'raw' && info.format !== 'qcow2') throw errors.vmmFailure(`${p.path} is ${info.format}, not raw or qcow2`);
    return { path: p.path, format: info.format, sizeBytes: info.sizeBytes, created: false };
  }
  if (p.sizeBytes === undefined) throw errors.invalidConfig([{ path: ['sizeBytes'], message: `${p.path} does not exist; sizeBytes is needed to create it` }]);
  await mkdir(dirname(p.path), { recursive: true });
  await qemuImg(['create', '-q', '-f', p.format, p.path, String(p.sizeBytes)]);
  return { path: p.path, format: p.format, sizeBytes: p.sizeBytes, created: true };
}

export async function createImage(p: ParamsOf<'image/create'>): Promise<ResultInputOf<'image/create'>> {
  if (existsSync(p.path)) throw errors.alreadyExists(p.path);
  await mkdir(dirname(p.path), { recursive: true });
  if (p.backingFile !== undefined) {
    if (p.format !== 'qcow2') throw errors.invalidConfig([{ path: ['format'], message: 'an overlay on a backing file must be qcow2' }]);
    if (!existsSync(p.backingFile)) throw errors.invalidConfig([{ path: ['backingFile'], message: `${p.backingFile} does not exist` }]);
    const backing = await imageInfo(p.backingFile);
    const size = p.sizeBytes === undefined ? [] : [String(p.sizeBytes)];
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', p.backingFile, '-F', backing.format, p.path, ...size]);
  } else {
    if (p.sizeBytes === undefined) throw errors.invalidConfig([{ path: ['sizeBytes'], message: 'sizeBytes is needed without a backingFile' }]);
    await qemuImg(['create', '-q', '-f', p.format, p.path, String(p.sizeBytes)]);
  }
  if (p.cloudInit === undefined) return { path: p.path };
  const seed = p.cloudInit;
  const dir = `${seed.seedPath}.d`;
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'user-data'), seed.userData);
  await writeFile(join(dir, 'meta-data'), seed.metaData);
  if (seed.networkConfig !== undefined) await writeFile(join(dir, 'network-config'), seed.networkConfig);
  const vvfat = JSON.stringify({ driver: 'vvfat', dir, label: 'cidata', floppy: true, 'fat-type': 12 });
  try {
    await qemuImg(['convert', '-O', 'raw', `json:${vvfat}`, seed.seedPath]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return { path: p.path, seedPath: seed.seedPath };
}

export async function deleteImage(path: string): Promise<void> {
  await rm(path, { force: true });
}
