import { constants, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { UnreadableFileError } from '../errors/index.js';

/** A small regular file's text, and which file it was: a file replaced under the same name has another `identity`. */
export interface SmallFile {
  text: string;
  /** Device and inode: with the text, tells the file read from one put in its place since. */
  identity: string;
}

/**
 * The file open for reading, with its fstat, when it is a regular file of at most `max` bytes; undefined only when
 * there is none (ENOENT). Opened non-blocking and checked with fstat before anything is read: a plain read of a FIFO
 * put in its place waits for a writer forever (and holds a thread of the pool). A FIFO, a directory or a bigger
 * file is an UnreadableFileError; any other failure (EACCES, EMFILE, EIO) is thrown as it is, for none of them says
 * the file is absent. The caller closes it.
 */
export async function openRegular(file: string, max: number): Promise<{ fh: FileHandle; st: Stats } | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new UnreadableFileError(file, `not a regular file (${kindOf(st)})`);
    if (st.size > max) throw new UnreadableFileError(file, `bigger than ${max} bytes (${st.size})`);
    return { fh, st };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** A regular file of at most `max` bytes, read whole (openRegular says what else it may be). */
export async function readSmallFile(file: string, max: number): Promise<SmallFile | undefined> {
  const opened = await openRegular(file, max);
  if (opened === undefined) return undefined;
  const { fh, st } = opened;
  try {
    const buf = Buffer.allocUnsafe(st.size + 1);
    let got = 0;
    for (let n = -1; n !== 0 && got < buf.length; got += n) n = (await fh.read(buf, got, buf.length - got, got)).bytesRead;
    // Ours are replaced whole (rename), never appended to: one that grows is being written by something else.
    if (got === buf.length) throw new UnreadableFileError(file, 'grew while read');
    return { text: buf.toString('utf8', 0, got), identity: `${st.dev}:${st.ino}` };
  } finally {
    await fh.close();
  }
}

function kindOf(st: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'a device';
}
