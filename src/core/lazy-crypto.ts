import { createRequire } from 'node:module';
import { randomBytesSync } from '../proc/index.js';

/**
 * Random names and hashes without node:crypto until a hash is needed: node:crypto (or Web Crypto's global, which
 * loads the same) is ~1 MiB resident in an embedder's process. Random bytes come from /dev/urandom
 * (randomBytesSync), a hash from node:crypto required at its first call.
 */

export const randomHex = (bytes: number): string => randomBytesSync(bytes).toString('hex');

const require = createRequire(import.meta.url);

export function sha256Hex(data: string | Buffer): string {
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  return createHash('sha256').update(data).digest('hex');
}
