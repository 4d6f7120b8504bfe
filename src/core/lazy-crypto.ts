import { createRequire } from 'node:module';

/**
 * Random names and hashes without node:crypto at `import 'hvplug'`: node:crypto loads node's streams with it,
 * ~1 MiB resident in an embedder's process before it runs any plugin. Random bytes come from Web Crypto's global
 * `crypto` (which node loads when first used), a hash from node:crypto required at its first call.
 */

export const randomHex = (bytes: number): string => Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString('hex');

const require = createRequire(import.meta.url);

export function sha256Hex(data: string | Buffer): string {
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  return createHash('sha256').update(data).digest('hex');
}
