import { open } from 'node:fs/promises';

/**
 * A minimal, valid qcow2 (version 3) image: header, one refcount table, one refcount block, an empty
 * L1 table, and optionally a backing file. `qemu-img check` accepts what this writes, so the images
 * this plugin makes are real images for any tool that reads qcow2.
 */
const MAGIC = 0x514649fb;
const CLUSTER_BITS = 16;
const CLUSTER = 1 << CLUSTER_BITS;
const HEADER_LENGTH = 104;
const BACKING_FORMAT_EXT = 0xe2792aca;
/** One L2 table maps CLUSTER / 8 clusters. */
const BYTES_PER_L1_ENTRY = (CLUSTER / 8) * CLUSTER;

function pad8(n: number): number {
  return (n + 7) & ~7;
}

export function qcow2Image(sizeBytes: number, backing?: { path: string; format: 'raw' | 'qcow2' }): Buffer {
  const l1Entries = Math.max(1, Math.ceil(sizeBytes / BYTES_PER_L1_ENTRY));
  const l1Clusters = Math.ceil((l1Entries * 8) / CLUSTER);
  const clusters = 3 + l1Clusters;
  const refcountTable = CLUSTER;
  const refcountBlock = 2 * CLUSTER;
  const l1Table = 3 * CLUSTER;
  const image = Buffer.alloc(clusters * CLUSTER);

  // Header extensions follow the header: the backing file's format, then the end marker.
  let at = HEADER_LENGTH;
  if (backing) {
    const name = Buffer.from(backing.format);
    image.writeUInt32BE(BACKING_FORMAT_EXT, at);
    image.writeUInt32BE(name.length, at + 4);
    name.copy(image, at + 8);
    at += 8 + pad8(name.length);
  }
  at += 8; // end of extensions: type 0, length 0
  const backingName = backing ? Buffer.from(backing.path) : undefined;
  if (backingName) {
    if (at + backingName.length > CLUSTER) throw new Error('backing file path too long for a qcow2 header');
    backingName.copy(image, at);
  }

  image.writeUInt32BE(MAGIC, 0);
  image.writeUInt32BE(3, 4);
  image.writeBigUInt64BE(BigInt(backingName ? at : 0), 8);
  image.writeUInt32BE(backingName?.length ?? 0, 16);
  image.writeUInt32BE(CLUSTER_BITS, 20);
  image.writeBigUInt64BE(BigInt(sizeBytes), 24);
  image.writeUInt32BE(0, 32); // no encryption
  image.writeUInt32BE(l1Entries, 36);
  image.writeBigUInt64BE(BigInt(l1Table), 40);
  image.writeBigUInt64BE(BigInt(refcountTable), 48);
  image.writeUInt32BE(1, 56); // refcount table clusters
  image.writeUInt32BE(0, 60); // snapshots
  image.writeBigUInt64BE(0n, 64);
  image.writeBigUInt64BE(0n, 72); // incompatible features
  image.writeBigUInt64BE(0n, 80); // compatible features
  image.writeBigUInt64BE(0n, 88); // autoclear features
  image.writeUInt32BE(4, 96); // refcount order: 16-bit refcounts
  image.writeUInt32BE(HEADER_LENGTH, 100);

  image.writeBigUInt64BE(BigInt(refcountBlock), refcountTable);
  for (let c = 0; c < clusters; c++) image.writeUInt16BE(1, refcountBlock + 2 * c);
  return image;
}

/** The image's format and virtual size, from its header (qcow2) or its length (raw). */
export async function probeImage(path: string): Promise<{ format: 'raw' | 'qcow2'; sizeBytes: number }> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(32);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    if (bytesRead >= 32 && head.readUInt32BE(0) === MAGIC) return { format: 'qcow2', sizeBytes: Number(head.readBigUInt64BE(24)) };
    return { format: 'raw', sizeBytes: size };
  } finally {
    await fh.close();
  }
}
