import type { ShimVm, VmRecord } from '../core/index.js';
import type { VmHost } from '../daemon/index.js';
import { CliFailure } from './errors.js';

/**
 * A prefix shorter than this is refused: with a handful of VMs three hex digits usually match one, but a
 * script that saved such a prefix would act on another VM once a few more exist. Four is what a person
 * types from `ps` and still rarely ambiguous.
 */
export const MIN_PREFIX = 4;

/** Names a person types and a shell passes unquoted. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** What resolveRef reads of a record: the fast path (fast.ts) parses no more of it. */
export interface RefRecord {
  readonly vmId: string;
  readonly config: { readonly name?: string | undefined };
}

/**
 * Which record `<vm>` means: an exact id, else an exact name, else a unique id prefix of at least
 * MIN_PREFIX characters. Anything else fails naming what was looked for and where.
 */
export function resolveRef<R extends RefRecord>(records: readonly R[], ref: string, where: string): R {
  const byId = records.find((r) => r.vmId === ref);
  if (byId) return byId;
  const byName = records.filter((r) => r.config.name === ref);
  if (byName.length === 1) return byName[0]!;
  if (byName.length > 1) throw new CliFailure(`the name "${ref}" is held by several VMs: ${byName.map((r) => r.vmId).join(', ')}; use an id`);
  const byPrefix = records.filter((r) => r.vmId.startsWith(ref));
  if (byPrefix.length > 0 && ref.length < MIN_PREFIX) {
    throw new CliFailure(`no VM named "${ref}" in the state directory ${where}, and an id prefix needs at least ${MIN_PREFIX} characters`);
  }
  if (byPrefix.length === 1) return byPrefix[0]!;
  if (byPrefix.length > 1) {
    throw new CliFailure(`"${ref}" is the prefix of several VMs: ${byPrefix.map((r) => `${r.vmId}${r.config.name ? ` (${r.config.name})` : ''}`).join(', ')}`);
  }
  throw new CliFailure(`no VM "${ref}" (id, name or id prefix) in the state directory ${where}`);
}

/** The record `<vm>` means, read from the host's state directory. */
export async function findRecord(host: VmHost, ref: string): Promise<VmRecord> {
  const { records } = await host.records();
  return resolveRef(records, ref, host.stateDir);
}

/** Fails when another VM of the state directory has this name, naming that VM. */
export async function ensureNameFree(host: VmHost, name: string | undefined): Promise<void> {
  if (name === undefined) return;
  const { records } = await host.records();
  const holder = records.find((r) => r.config.name === name);
  if (holder) throw new CliFailure(`the name "${name}" is taken by VM ${holder.vmId} (${holder.status}); choose another or remove it with hvplug rm ${holder.vmId}`);
}

/** The VM `<vm>` means, re-attached through its plugin (started here if need be). */
export async function attachRef(host: VmHost, ref: string): Promise<{ record: VmRecord; vm: ShimVm }> {
  const record = await findRecord(host, ref);
  const vm = await host.attach(record.vmId);
  // Gone between the listing and the attach: another command deleted it.
  if (!vm) throw new CliFailure(`VM ${record.vmId} left the state directory ${host.stateDir} meanwhile`);
  return { record, vm };
}
