import { constants } from 'node:fs';
import { copyFile, lstat, mkdir, open, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errors } from 'hvplug/plugin-sdk';
import type { ParamsOf, ResultInputOf } from 'hvplug/protocol';
import { errnoOf, invalidParams } from './errors.js';
import { probeImage, qcow2Image } from './qcow2.js';

type Format = 'raw' | 'qcow2';

const SEED_FILES = new Set(['user-data', 'meta-data', 'network-config']);

/** Creates the file (failing with EEXIST if it is there) as an empty image of the format. */
async function writeEmptyImage(path: string, format: Format, sizeBytes: number, backing?: { path: string; format: Format }): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const fh = await open(path, 'wx', 0o644);
  try {
    if (format === 'qcow2') await fh.writeFile(qcow2Image(sizeBytes, backing));
    else await fh.truncate(sizeBytes);
  } finally {
    await fh.close();
  }
}

export async function ensureImage(p: ParamsOf<'image/ensure'>): Promise<ResultInputOf<'image/ensure'>> {
  const existing = await probeImage(p.path).catch((err: unknown) => {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw errors.vmmFailure(`cannot read ${p.path}: ${(err as Error).message}`, errnoOf(err));
  });
  if (existing) return { path: p.path, ...existing, created: false };
  if (p.sizeBytes === undefined) throw invalidParams('image/ensure', ['sizeBytes'], `${p.path} does not exist, and creating it needs sizeBytes`);
  try {
    await writeEmptyImage(p.path, p.format, p.sizeBytes);
  } catch (err) {
    // Someone else made it meanwhile: it exists, which is what was asked.
    if (errnoOf(err) === 'EEXIST') return { path: p.path, ...(await probeImage(p.path)), created: false };
    throw errors.vmmFailure(`cannot create ${p.path}: ${(err as Error).message}`, errnoOf(err));
  }
  return { path: p.path, format: p.format, sizeBytes: p.sizeBytes, created: true };
}

/** The NoCloud seed as a directory (cloud-init reads it with `seedfrom`, or packs it into a cidata volume). */
async function writeSeed(seed: NonNullable<ParamsOf<'image/create'>['cloudInit']>): Promise<void> {
  try {
    await mkdir(seed.seedPath, { recursive: false, mode: 0o755 });
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') throw errors.alreadyExists(seed.seedPath);
    throw errors.vmmFailure(`cannot create the seed ${seed.seedPath}: ${(err as Error).message}`, errnoOf(err));
  }
  await writeFile(join(seed.seedPath, 'user-data'), seed.userData);
  await writeFile(join(seed.seedPath, 'meta-data'), seed.metaData);
  if (seed.networkConfig !== undefined) await writeFile(join(seed.seedPath, 'network-config'), seed.networkConfig);
}

export async function createImage(p: ParamsOf<'image/create'>): Promise<ResultInputOf<'image/create'>> {
  const backing = p.backingFile
    ? await probeImage(p.backingFile).catch((err: unknown) => {
        throw invalidParams('image/create', ['backingFile'], `cannot read ${p.backingFile}: ${errnoOf(err) ?? (err as Error).message}`);
      })
    : undefined;
  const sizeBytes = p.sizeBytes ?? backing?.sizeBytes;
  if (sizeBytes === undefined) throw invalidParams('image/create', ['sizeBytes'], 'needed when there is no backingFile');
  if (backing && p.format === 'raw' && sizeBytes < backing.sizeBytes) {
    throw invalidParams('image/create', ['sizeBytes'], `a raw copy cannot be smaller than its backing file (${backing.sizeBytes} bytes)`);
  }
  try {
    if (p.format === 'qcow2' || !p.backingFile) {
      await writeEmptyImage(p.path, p.format, sizeBytes, p.backingFile && backing ? { path: p.backingFile, format: backing.format } : undefined);
    } else {
      // raw has no backing files: the overlay is a copy (a reflink where the filesystem can).
      await mkdir(dirname(p.path), { recursive: true });
      await copyFile(p.backingFile, p.path, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      await truncate(p.path, sizeBytes);
    }
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') throw errors.alreadyExists(p.path);
    throw errors.vmmFailure(`cannot create ${p.path}: ${(err as Error).message}`, errnoOf(err));
  }
  if (p.cloudInit) {
    try {
      await writeSeed(p.cloudInit);
    } catch (err) {
      await rm(p.path, { force: true });
      throw err;
    }
  }
  return { path: p.path, seedPath: p.cloudInit?.seedPath };
}

/** Deletes an image file or a seed directory this plugin wrote; a missing one is already deleted. */
export async function deleteImage(path: string): Promise<void> {
  const st = await lstat(path).catch((err: unknown) => {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw errors.vmmFailure(`cannot delete ${path}: ${(err as Error).message}`, errnoOf(err));
  });
  if (!st) return;
  if (st.isDirectory()) {
    const entries = await readdir(path);
    if (!entries.every((e) => SEED_FILES.has(e))) throw invalidParams('image/delete', ['path'], `${path} is a directory, and not a cloud-init seed`);
    await rm(path, { recursive: true, force: true });
    return;
  }
  await rm(path, { force: true });
}
