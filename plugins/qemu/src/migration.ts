// Live migration with QEMU's own migration: the source's `migrate` to the destination's `migrate-incoming`, the
// progress read from query-migrate. QEMU 7.2.
import { PluginError, errors, type CallContext } from 'hvplug/plugin-sdk';
import type { ResultInputOf } from 'hvplug/protocol';
import { vmmCall } from './errors.js';
import type { QmpClient } from './qmp.js';
import type { MigrationInfo as MigrateInfo } from './qmp-schema.js';

/** The destination's listening socket, relative to its run directory (QEMU's cwd). */
export const MIGRATE_SOCKET = 'migrate.sock';
/** How often query-migrate is asked while a migration runs. */
const POLL_MS = 20;
/** A completed migration whose figures QEMU has not computed yet is asked again this often, at most SETTLE_TRIES times. */
const SETTLE_MS = 2;
const SETTLE_TRIES = 250;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


/** Runs `migrate` to `uri` until QEMU says completed; cancellable (migrate_cancel), and the guest then runs on here. */
export async function migrateLive(qmp: QmpClient, uri: string, ctx: CallContext): Promise<ResultInputOf<'vm/migrate'>> {
  ctx.progress(`migrating to ${uri}`, 0);
  await vmmCall(() => qmp.execute('migrate', { uri }));
  let lastPct = -1;
  let settleTries = 0;
  for (;;) {
    const info = (await vmmCall(() => qmp.execute('query-migrate'))) as MigrateInfo;
    if (info.status === 'completed') {
      // QEMU 7.2 sets `completed` before it computes total-time and downtime (migration_iteration_finish): a poll
      // in between reads 0 for both. total-time is never 0 once computed (it includes the setup).
      if (!info['total-time'] && settleTries++ < SETTLE_TRIES) {
        await sleep(SETTLE_MS);
        continue;
      }
      ctx.progress('the guest runs at the destination', 100);
      return {
        ...(info.downtime === undefined ? {} : { downtimeMs: info.downtime }),
        totalMs: info['total-time'] ?? 0,
        transferredBytes: info.ram?.transferred ?? 0,
      };
    }
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw errors.vmmFailure(`migration to ${uri} ${info.status}${info['error-desc'] ? `: ${info['error-desc']}` : ''}`);
    }
    if (ctx.signal.aborted) {
      await qmp.execute('migrate_cancel').catch(() => undefined);
      throw new PluginError('Cancelled', `vm/migrate to ${uri} cancelled`);
    }
    const total = info.ram?.total ?? 0;
    const pct = total > 0 ? Math.min(99, Math.floor((100 * (info.ram?.transferred ?? 0)) / total)) : 0;
    if (pct !== lastPct) {
      lastPct = pct;
      ctx.progress(`${info.status ?? 'migrating'}: ${info.ram?.transferred ?? 0} bytes sent`, pct);
    }
    await sleep(POLL_MS);
  }
}
