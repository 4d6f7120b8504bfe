import type { ShimVm, VmRecord } from '../core/index.js';
import type { VmHost } from '../daemon/index.js';
import { NameClaims } from '../core/name-claims.js';
import { matchRef, type RefRecord } from '../core/vm-ref.js';
import { CliFailure } from './errors.js';

/** Names a person types and a shell passes unquoted. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Which record `<vm>` means (matchRef's rule); a failure naming what was looked for and where otherwise. */
export function resolveRef<R extends RefRecord>(records: readonly R[], ref: string, where: string): R {
  const match = matchRef(records, ref, where);
  if ('failure' in match) throw new CliFailure(match.failure);
  return match.record;
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
  const named = records.filter((r) => r.config.name === name);
  if (named.length === 0) return;
  // A create that is losing the name has its record for a moment (written before its claim fails): the claim says
  // which one holds it. Unreadable (another user's daemon): the first record with the name.
  const claimant = named.length > 1 ? await new NameClaims(host.stateDir, () => Promise.resolve(undefined)).holderOf(name) : undefined;
  const holder = named.find((r) => r.vmId === claimant) ?? named[0];
  if (holder) throw new CliFailure(`the name "${name}" is taken by VM ${holder.vmId} (${holder.status}); choose another or remove it with hvplug rm ${holder.vmId}`);
}

/** The VM `<vm>` means, re-attached through its plugin (started here if need be). */
export async function attachRef(host: VmHost, ref: string): Promise<{ record: VmRecord; vm: ShimVm }> {
  const record = await findRecord(host, ref);
  const vm = await host.attach(record.vmId);
  // Gone between the listing and the attach: another command deleted it, or the attach finished a delete cut short.
  if (!vm && record.deleting !== undefined) throw new CliFailure(`VM ${record.vmId} was being deleted when the process deleting it ended; it is deleted now`);
  if (!vm) throw new CliFailure(`VM ${record.vmId} left the state directory ${host.stateDir} meanwhile`);
  return { record, vm };
}
