// Writer for the cpio "newc" format (magic 070701), the only archive format the Linux initramfs
// unpacker reads (init/initramfs.c). Written by hand so building an initramfs needs no `cpio` binary.
// Layout per entry: a 110-byte ASCII header of 13 eight-digit hex fields, the NUL-terminated name
// padded to a 4-byte boundary, then the data padded to a 4-byte boundary; a "TRAILER!!!" entry ends it.

export type CpioEntry =
  | { readonly kind: 'dir'; readonly path: string; readonly mode?: number }
  | { readonly kind: 'file'; readonly path: string; readonly data: Uint8Array; readonly mode?: number }
  | { readonly kind: 'symlink'; readonly path: string; readonly target: string }
  | { readonly kind: 'chardev'; readonly path: string; readonly major: number; readonly minor: number; readonly mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const TRAILER = 'TRAILER!!!';

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio field out of range: ${n}`);
  return n.toString(16).padStart(8, '0');
}

const pad4 = (n: number): number => (4 - (n % 4)) % 4;

interface Header {
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly mtime: number;
  readonly size: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  readonly name: string;
}

function header(h: Header): Buffer {
  const name = Buffer.from(`${h.name}\0`, 'utf8');
  const fields = [h.ino, h.mode, 0, 0, h.nlink, h.mtime, h.size, 0, 0, h.rdevMajor, h.rdevMinor, name.length, 0];
  const text = Buffer.from(`070701${fields.map(hex8).join('')}`, 'ascii');
  return Buffer.concat([text, name, Buffer.alloc(pad4(text.length + name.length))]);
}

/** Archive paths are relative to the initramfs root: "init", "bin/busybox", never "/init". */
function normalize(path: string): string {
  const p = path.replace(/^\/+/, '').replace(/\/+$/, '');
  if (p === '' || p.split('/').some((s) => s === '..' || s === '')) throw new Error(`invalid cpio path: ${JSON.stringify(path)}`);
  return p;
}

/**
 * Serializes entries in the given order (a directory must come before what it contains: the kernel
 * does not create parents). mtime is fixed at 0 so equal inputs give byte-identical archives.
 */
export function writeCpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const seen = new Set<string>();
  for (const e of entries) {
    const name = normalize(e.path);
    if (seen.has(name)) throw new Error(`duplicate cpio path: ${name}`);
    seen.add(name);
    let mode: number;
    let data: Uint8Array = new Uint8Array(0);
    let rdevMajor = 0;
    let rdevMinor = 0;
    switch (e.kind) {
      case 'dir':
        mode = S_IFDIR | (e.mode ?? 0o755);
        break;
      case 'file':
        mode = S_IFREG | (e.mode ?? 0o644);
        data = e.data;
        break;
      case 'symlink':
        mode = S_IFLNK | 0o777;
        data = Buffer.from(e.target, 'utf8');
        break;
      case 'chardev':
        mode = S_IFCHR | (e.mode ?? 0o600);
        rdevMajor = e.major;
        rdevMinor = e.minor;
        break;
    }
    parts.push(header({ ino: ino++, mode, nlink: e.kind === 'dir' ? 2 : 1, mtime: 0, size: data.length, rdevMajor, rdevMinor, name }));
    if (data.length > 0) parts.push(Buffer.from(data.buffer, data.byteOffset, data.length), Buffer.alloc(pad4(data.length)));
  }
  parts.push(header({ ino: 0, mode: 0, nlink: 1, mtime: 0, size: 0, rdevMajor: 0, rdevMinor: 0, name: TRAILER }));
  return Buffer.concat(parts);
}

/** Every directory above `path` ("a/b/c" → ["a", "a/b"]), for callers building entries from file lists. */
export function parentDirs(path: string): string[] {
  const segs = normalize(path).split('/');
  return segs.slice(0, -1).map((_, i) => segs.slice(0, i + 1).join('/'));
}
