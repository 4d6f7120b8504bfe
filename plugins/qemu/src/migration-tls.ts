// TLS for the live migration stream between two QEMUs: QEMU's own tls-creds-x509 object on each side, read from a
// directory in QEMU's layout (docs/migration.md). The plugin only decides when the stream must be TLS and refuses
// what would send or take it in the clear over TCP.
import { accessSync, constants, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { errors, UsageError } from 'hvplug/plugin-sdk';
import { vmmCall } from './errors.js';
import type { QmpClient } from './qmp.js';

/** The plugin's flag naming the directory; QEMU reads the files in it each time a migration begins. */
export const MIGRATION_TLS_FLAG = 'migration-tls-dir';

/**
 * The files of QEMU's tls-creds-x509 `dir` layout. A plugin both sends and receives, so it needs both pairs: the
 * server pair when it is the destination, the client pair (the certificate the destination verifies) as the source.
 */
export const MIGRATION_TLS_FILES = ['ca-cert.pem', 'server-cert.pem', 'server-key.pem', 'client-cert.pem', 'client-key.pem'] as const;

/** The QOM id of the credentials object; one per QEMU, replaced at each attempt so a renewed certificate is read. */
const CREDS_ID = 'hvplug-migration-tls';

/**
 * The directory of --migration-tls-dir, absolute (QEMU's cwd is the VM's run directory), checked to hold every file
 * of the layout; undefined when the flag is not given (migration streams are then plaintext, as before).
 */
export function migrationTlsDir(flag: string | undefined): string | undefined {
  if (flag === undefined) return undefined;
  if (flag === '') throw new UsageError(`--${MIGRATION_TLS_FLAG}: expected a directory, got an empty string`);
  const dir = resolve(flag);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (err) {
    throw new UsageError(`--${MIGRATION_TLS_FLAG} ${dir}: ${(err as Error).message}`);
  }
  if (!isDir) throw new UsageError(`--${MIGRATION_TLS_FLAG} ${dir}: not a directory`);
  const missing = MIGRATION_TLS_FILES.filter((f) => {
    try {
      accessSync(resolve(dir, f), constants.R_OK);
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length) throw new UsageError(`--${MIGRATION_TLS_FLAG} ${dir}: no readable ${missing.join(', ')} (QEMU's tls-creds-x509 layout needs ${MIGRATION_TLS_FILES.join(', ')})`);
  return dir;
}

/** How one stream goes: in the clear, or in TLS checked against `hostname` (the destination's certificate names it). */
export type StreamSecurity = { tls: false } | { tls: true; dir: string; hostname: string };

/** The host of a tcp: uri, brackets of an IPv6 address taken off; undefined for a unix: uri. */
function tcpHost(uri: string): string | undefined {
  const m = /^tcp:(?:\[([^\]]+)\]|([^:]+)):\d+$/.exec(uri);
  return m ? (m[1] ?? m[2]) : undefined;
}

/**
 * The source's side: the stream goes in TLS when the destination asked for it, and over TCP a plugin with credentials
 * sends nothing in the clear. A unix socket stays on this machine, guarded by its file mode: plaintext there.
 */
export function sendingSecurity(uri: string, asked: boolean, dir: string | undefined): StreamSecurity {
  const host = tcpHost(uri);
  if (asked) {
    if (dir === undefined) {
      throw errors.notSupported('vm/migrate', `the destination takes the stream at ${uri} in TLS only, and this plugin has no migration TLS credentials (start it with --${MIGRATION_TLS_FLAG} <dir>)`);
    }
    if (host === undefined) throw errors.notSupported('vm/migrate', `TLS over a unix socket (${uri}) is not done: this plugin sends a unix-socket stream in the clear`);
    return { tls: true, dir, hostname: host };
  }
  if (dir !== undefined && host !== undefined) {
    throw errors.notSupported('vm/migrate', `the destination at ${uri} takes the stream in plaintext, and this plugin sends migrations over TCP in TLS only (--${MIGRATION_TLS_FLAG} is set)`);
  }
  return { tls: false };
}

/**
 * Gives `qmp`'s QEMU the credentials object (read from `dir` now) and makes its migrations use it: `server` verifies
 * its peer's certificate against the CA (verify-peer), `client` checks the server's against the CA and `hostname`.
 */
export async function useMigrationTls(qmp: QmpClient, dir: string, endpoint: 'server' | 'client', hostname?: string): Promise<void> {
  // A QEMU that migrated (or tried) before has the object still: it goes, so the files are read again.
  await dropMigrationTls(qmp);
  await vmmCall(() => qmp.execute('object-add', { 'qom-type': 'tls-creds-x509', id: CREDS_ID, dir, endpoint, 'verify-peer': true }));
  await vmmCall(() => qmp.execute('migrate-set-parameters', { 'tls-creds': CREDS_ID, ...(hostname === undefined ? {} : { 'tls-hostname': hostname }) }));
}

/** Back to plaintext migrations, the object gone; nothing to undo is no failure. */
export async function dropMigrationTls(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate-set-parameters', { 'tls-creds': '', 'tls-hostname': '' }).catch(() => undefined);
  await qmp.execute('object-del', { id: CREDS_ID }).catch(() => undefined);
}
