import * as z from 'zod';
import { VM_STATUSES, type VmStatus } from 'hvplug/protocol';
import { flagSet, nonEmpty } from './args.js';
import { defineCommand, type Command } from './command.js';
import { EXIT_OK } from './errors.js';
import { table } from './output.js';
import { safeLine, safeText } from './safe-text.js';
import { attachRef } from './vm-ref.js';
import { errorText, pidOf } from './vm-util.js';

interface PsRow {
  id: string;
  name?: string;
  plugin: string;
  status: VmStatus | 'unknown';
  pid?: number;
  created: string;
  /** Another live host that drives the VM: ps shows it as its record says and leaves it alone. */
  owner?: string;
  error?: string;
}

const FILTER_KEYS = ['status', 'plugin', 'name'] as const;
type FilterKey = (typeof FILTER_KEYS)[number];

/** `key=value`, as docker and nerdctl take it; the same key given twice matches either value. */
const Filter = z.string().transform((s, ctx): [FilterKey, string] => {
  const eq = s.indexOf('=');
  const key = s.slice(0, eq) as FilterKey;
  const value = s.slice(eq + 1);
  if (eq < 0 || !FILTER_KEYS.includes(key) || value === '') {
    ctx.addIssue({ code: 'custom', message: `expected status=<status>, plugin=<name> or name=<name>, got "${s}"` });
    return z.NEVER;
  }
  if (key === 'status' && !(['unknown', ...VM_STATUSES] as string[]).includes(value)) {
    ctx.addIssue({ code: 'custom', message: `status is one of ${[...VM_STATUSES, 'unknown'].join(', ')}, got "${value}"` });
    return z.NEVER;
  }
  return [key, value];
});

/** Every key given must match one of its values. */
function matches(row: PsRow, filters: readonly [FilterKey, string][]): boolean {
  return FILTER_KEYS.every((key) => {
    const wanted = filters.filter(([k]) => k === key).map(([, v]) => v);
    return wanted.length === 0 || wanted.includes(row[key] ?? '');
  });
}

export const psCommand = defineCommand({
  name: 'ps',
  summary: 'list the VMs in the state directory with their live status',
  description:
    'Lists every VM recorded in the state directory (--state-dir, else $HVPLUG_STATE_DIR, else $XDG_STATE_HOME/hvplug), ' +
    'asking its plugin for the live status: each VM is re-attached, so a VM whose VMM went away shows as lost, and one whose ' +
    'delete was cut short by the end of the process deleting it is deleted now, and not listed. ' +
    'The pid is the guest\'s, when the plugin reports one for a running or paused VM. ' +
    'An unreadable record, or a VM whose plugin cannot be reached, is reported on stderr. VMs keep running after ps exits.',
  flags: {
    quiet: { type: 'boolean', short: 'q', help: 'print the ids only, one a line' },
    filter: { type: 'string', multiple: true, value: '<key=value>', help: 'only the VMs with this status, plugin or name (status=running, plugin=qemu, name=web); repeatable: different keys must all match, one key given twice matches either value' },
    json: { type: 'boolean', help: 'a JSON array of {id, name, plugin, status, pid, created, owner}' },
  },
  positionals: [],
  options: z.object({ json: flagSet(), quiet: flagSet(), filter: z.array(Filter).default([]) }),
  async action({ json, quiet, filter }, ctx) {
    const host = await ctx.vmHost();
    const rows: PsRow[] = [];
    try {
      const { records, errors } = await host.records();
      for (const e of errors) process.stderr.write(`${safeText(`hvplug: VM record ${e.where}: ${e.message}`)}\n`);
      // One at a time: attaching starts each plugin once and recovers VMs in order, so the output is stable.
      for (const r of [...records].sort((a, b) => a.createdAt.localeCompare(b.createdAt))) {
        const row: PsRow = { id: r.vmId, ...(r.config.name !== undefined ? { name: r.config.name } : {}), plugin: r.plugin, status: 'unknown', created: r.createdAt };
        // Filters that the record decides alone spare the plugin a start.
        if (!matches({ ...row, status: 'unknown' }, filter.filter(([k]) => k !== 'status'))) continue;
        try {
          const vm = await host.attach(r.vmId);
          // No VM any more: deleted since the listing, or its record held a delete cut short that the attach finished.
          if (!vm) continue;
          if (vm.ownedBy !== undefined) {
            row.status = vm.status;
            row.owner = vm.ownedBy;
          } else {
            row.status = vm.status;
            const pid = await pidOf(vm, ctx);
            if (pid !== undefined) row.pid = pid;
          }
        } catch (err) {
          // The plugin could not be started or asked: the VM may well be running, so it is not called lost.
          row.error = errorText(err);
          process.stderr.write(`${safeText(`hvplug: VM ${r.vmId}: cannot reach plugin ${r.plugin}: ${row.error}`)}\n`);
        }
        if (matches(row, filter)) rows.push(row);
      }
    } finally {
      await host.close();
    }
    if (quiet && !json) {
      if (rows.length) ctx.output(false).text(rows.map((r) => r.id).join('\n'));
      return EXIT_OK;
    }
    ctx.output(json).document(quiet ? rows.map((r) => r.id) : rows, () =>
      table([
        ['ID', 'PLUGIN', 'STATUS', 'PID', 'CREATED', 'OWNER', 'NAME'],
        ...rows.map((r) => [r.id, r.plugin, r.status, r.pid !== undefined ? String(r.pid) : '-', r.created, r.owner ?? '-', r.name ?? '-'].map(safeLine)),
      ]),
    );
    return EXIT_OK;
  },
});

/** How long a graceful stop waits for the guest before the plugin forces it off (vm/stop's own default). */
const STOP_GRACE_S = 10;

const IdOptions = { vm: nonEmpty('a VM id, name or id prefix'), json: flagSet() };
const idPositional = [{ name: 'vm', required: true, help: 'the VM: its id, its name, or an id prefix of at least 4 characters' }] as const;
const jsonFlag = { type: 'boolean', help: 'print {id, status} as JSON' } as const;

export const stopCommand = defineCommand({
  name: 'stop',
  summary: 'stop a VM from the state directory and delete it (unless --keep)',
  description:
    'Re-attaches to the VM, stops it (gracefully, or at once with --force), then deletes it so that its record leaves the state directory. ' +
    'With --keep the stopped VM and its record stay. A lost VM (its VMM is gone) has nothing to stop: its record is removed. ' +
    'hvplug kill forces a VM off and keeps it; hvplug rm deletes a stopped one. Exits 1 when no VM matches.',
  flags: {
    force: { type: 'boolean', help: 'power the VM off at once instead of asking the guest to shut down' },
    keep: { type: 'boolean', help: 'keep the stopped VM and its record (do not delete)' },
    json: { type: 'boolean', help: 'print {id, status, deleted} as JSON' },
  },
  positionals: idPositional,
  options: z.object({ ...IdOptions, force: flagSet(), keep: flagSet() }),
  async action(opts, ctx) {
    const host = await ctx.vmHost();
    try {
      const { vm } = await attachRef(host, opts.vm);
      if (vm.status === 'running' || vm.status === 'paused') {
        const waiting = ctx.progress((t) =>
          opts.force ? `stopping ${vm.id}: forcing it off, ${t}` : `stopping ${vm.id}: waiting for the guest to shut down, ${t} (forced off after ${STOP_GRACE_S} s)`,
        );
        await vm.stop({ force: opts.force, graceMs: STOP_GRACE_S * 1000 }).finally(() => waiting.done());
      }
      let deleted = false;
      if (!opts.keep) {
        if (vm.status === 'lost') {
          // The plugin has nothing left to delete; a failure to tidy its side must not keep the record alive.
          await vm.delete().catch((err: unknown) => ctx.logger.info({ vmId: vm.id, err: errorText(err) }, 'vm/delete of a lost VM failed'));
        } else await vm.delete();
        // The host drops the record in the background; awaiting it here keeps an exiting CLI from leaving it stale.
        await host.store.delete(vm.id);
        deleted = true;
      }
      ctx.output(opts.json).document({ id: vm.id, status: deleted ? 'deleted' : vm.status, deleted }, () => vm.id);
      return EXIT_OK;
    } finally {
      await host.close();
    }
  },
});

function stateChange(name: 'pause' | 'resume', summary: string): Command {
  return defineCommand({
    name,
    summary,
    description: `Re-attaches to the VM in the state directory and asks its plugin to ${name} it; prints the id. Exits 1 when no VM matches or the plugin refuses.`,
    flags: { json: jsonFlag },
    positionals: idPositional,
    options: z.object(IdOptions),
    async action(opts, ctx) {
      const host = await ctx.vmHost();
      try {
        const { vm } = await attachRef(host, opts.vm);
        await (name === 'pause' ? vm.pause({}) : vm.resume({}));
        ctx.output(opts.json).document({ id: vm.id, status: vm.status }, () => vm.id);
        return EXIT_OK;
      } finally {
        await host.close();
      }
    },
  });
}

export const pauseCommand = stateChange('pause', 'pause a running VM from the state directory');
export const resumeCommand = stateChange('resume', 'resume a paused VM from the state directory');
