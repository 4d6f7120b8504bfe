/**
 * A prefix shorter than this is refused: with a handful of VMs three hex digits usually match one, but a
 * script that saved such a prefix would act on another VM once a few more exist. Four is what a person
 * types from `ps` and still rarely ambiguous.
 */
export const MIN_PREFIX = 4;

/** What the resolution reads of a record. */
export interface RefRecord {
  readonly vmId: string;
  readonly config: { readonly name?: string | undefined };
}

/** The record a reference means, or why there is not one (in the CLI's words, which it prints). */
export type RefMatch<R> = { readonly record: R } | { readonly failure: string };

/**
 * Which record `<vm>` means: an exact id, else an exact name, else a unique id prefix of at least MIN_PREFIX
 * characters. The one copy of the rule: the CLI resolves with it (cli/vm-ref.ts), and so does the daemon for the
 * fast path's call (hvplug/callRef), so that both pick the same VM or both refuse.
 */
export function matchRef<R extends RefRecord>(records: readonly R[], ref: string, where: string): RefMatch<R> {
  const byId = records.find((r) => r.vmId === ref);
  if (byId) return { record: byId };
  const byName = records.filter((r) => r.config.name === ref);
  if (byName.length === 1) return { record: byName[0]! };
  if (byName.length > 1) return { failure: `the name "${ref}" is held by several VMs: ${byName.map((r) => r.vmId).join(', ')}; use an id` };
  const byPrefix = records.filter((r) => r.vmId.startsWith(ref));
  if (byPrefix.length > 0 && ref.length < MIN_PREFIX) {
    return { failure: `no VM named "${ref}" in the state directory ${where}, and an id prefix needs at least ${MIN_PREFIX} characters` };
  }
  if (byPrefix.length === 1) return { record: byPrefix[0]! };
  if (byPrefix.length > 1) {
    return { failure: `"${ref}" is the prefix of several VMs: ${byPrefix.map((r) => `${r.vmId}${r.config.name ? ` (${r.config.name})` : ''}`).join(', ')}` };
  }
  return { failure: `no VM "${ref}" (id, name or id prefix) in the state directory ${where}` };
}

/**
 * matchRef over `all()`, the records, with its first step taken alone: the record of an exact id (`byId`, undefined
 * when it cannot tell alone), which is the answer whatever the other records are, found without reading them.
 */
export async function resolveRef<R extends RefRecord>(
  ref: string,
  where: string,
  byId: (vmId: string) => Promise<R | undefined>,
  all: () => Promise<readonly R[]>,
): Promise<RefMatch<R>> {
  const exact = await byId(ref);
  if (exact?.vmId === ref) return { record: exact };
  return matchRef(await all(), ref, where);
}
