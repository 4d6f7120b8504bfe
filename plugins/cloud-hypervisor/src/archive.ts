// A snapshot as one file. Cloud Hypervisor snapshots into a directory (config.json, state.json,
// memory-ranges); vm/save promises a snapshot *at path*, a file the caller can move, size and hand back to
// vm/restore. The directory is packed as a POSIX ustar archive (readable with `tar tf`), with GNU base-256
// sizes for members over 8 GiB, which memory-ranges of a big guest can be. Only flat directories of
// regular files are packed or unpacked: a member named like a path is refused.
import { open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

const BLOCK = 512;
const CHUNK = 1 << 20;
const MAX_OCTAL_SIZE = 8 ** 11 - 1;
const NAME = /^[A-Za-z0-9._-]{1,100}$/;

export class ArchiveError extends Error {
  override readonly name = 'ArchiveError';
}

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, '0')}\0`;
}

function header(name: string, size: number, mtimeSec: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(0o644, 8), 100);
  h.write(octal(0, 8), 108);
  h.write(octal(0, 8), 116);
  if (size <= MAX_OCTAL_SIZE) {
    h.write(octal(size, 12), 124);
  } else {
    // GNU base-256: the high bit of the first byte marks a big-endian binary number.
    let v = BigInt(size);
    for (let i = 135; i > 124; i--) {
      h[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    h[124] = 0x80;
  }
  h.write(octal(mtimeSec, 12), 136);
  h.fill(' ', 148, 156);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

function cString(h: Buffer, start: number, length: number): string {
  const end = h.indexOf(0, start);
  return h.toString('utf8', start, end === -1 || end > start + length ? start + length : end);
}

function sizeOf(h: Buffer): number {
  if ((h[124]! & 0x80) !== 0) {
    let v = 0n;
    for (let i = 125; i < 136; i++) v = (v << 8n) | BigInt(h[i]!);
    return Number(v);
  }
  return parseInt(cString(h, 124, 12).trim() || '0', 8);
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return parseInt(cString(h, 148, 8).trim(), 8) === sum;
}

/** Packs the regular files of `dir` into `out`, written to a temporary file first and renamed into place. */
export async function packDir(dir: string, out: string): Promise<void> {
  const names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
  const tmp = `${out}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    const buf = Buffer.alloc(CHUNK);
    for (const name of names) {
      if (!NAME.test(name)) throw new ArchiveError(`cannot pack ${name}: not a plain file name`);
      const src = join(dir, name);
      const st = await stat(src);
      await fh.write(header(name, st.size, Math.floor(st.mtimeMs / 1000)));
      const input = await open(src, 'r');
      try {
        let copied = 0;
        while (copied < st.size) {
          const { bytesRead } = await input.read(buf, 0, Math.min(CHUNK, st.size - copied), copied);
          if (bytesRead === 0) throw new ArchiveError(`${src} shrank while being packed`);
          await fh.write(buf, 0, bytesRead);
          copied += bytesRead;
        }
      } finally {
        await input.close();
      }
      const pad = (BLOCK - (st.size % BLOCK)) % BLOCK;
      if (pad) await fh.write(Buffer.alloc(pad));
    }
    await fh.write(Buffer.alloc(2 * BLOCK));
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await rename(tmp, out);
}

/** Unpacks an archive written by packDir into `dir` (which must exist); returns the member names. */
export async function unpackTo(archive: string, dir: string): Promise<string[]> {
  const fh = await open(archive, 'r').catch((err: Error) => {
    throw new ArchiveError(`cannot open ${archive}: ${err.message}`);
  });
  const names: string[] = [];
  try {
    const total = (await fh.stat()).size;
    const h = Buffer.alloc(BLOCK);
    const buf = Buffer.alloc(CHUNK);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fh.read(h, 0, BLOCK, pos);
      if (bytesRead < BLOCK) throw new ArchiveError(`${archive} ends without the end-of-archive blocks: not a snapshot, or truncated`);
      if (h.every((b) => b === 0)) break;
      if (!checksumOk(h) || cString(h, 257, 6) !== 'ustar') throw new ArchiveError(`${archive} is not a snapshot archive (bad header at byte ${pos})`);
      const name = cString(h, 0, 100);
      const type = h[156];
      if ((type !== 0x30 && type !== 0) || !NAME.test(name) || cString(h, 345, 155) !== '') {
        throw new ArchiveError(`${archive} holds ${JSON.stringify(name)}, which is not a plain file of a snapshot`);
      }
      const size = sizeOf(h);
      pos += BLOCK;
      if (pos + size > total) throw new ArchiveError(`${archive} is truncated inside ${name}`);
      const out = await open(join(dir, name), 'wx', 0o600);
      try {
        let copied = 0;
        while (copied < size) {
          const n = Math.min(CHUNK, size - copied);
          const r = await fh.read(buf, 0, n, pos + copied);
          if (r.bytesRead === 0) throw new ArchiveError(`${archive} shrank while being unpacked`);
          await out.write(buf, 0, r.bytesRead);
          copied += r.bytesRead;
        }
      } finally {
        await out.close();
      }
      names.push(name);
      pos += Math.ceil(size / BLOCK) * BLOCK;
    }
  } finally {
    await fh.close();
  }
  return names;
}
