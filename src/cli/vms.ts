import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { VmConfig, VmInfo, VmStatus } from 'hvplug/protocol';
import type { PluginHost, ShimVm } from '../core/index.js';
import { flagSet, nonEmpty } from './args.js';
import { defineCommand, type Command } from './command.js';
import type { CliContext } from './context.js';
import { CliFailure, EXIT_OK } from './errors.js';
import { table, type Output } from './output.js';
import { safeLine, safeText } from './safe-text.js';

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** The guest's pid when the plugin can tell; ps and run --detach only inform with it, so a failure is not fatal. */
async function pidOf(vm: ShimVm, ctx: CliContext): Promise<number | undefined> {
  if (!vm.hypervisor.capabilities.methods.includes('vm/info')) return undefined;
  if (vm.status !== 'running' && vm.status !== 'paused') return undefined;
  try {
    const info: VmInfo = await vm.info({});
    return info.pid;
  } catch (err) {
    ctx.logger.warn({ vmId: vm.id, err: errorText(err) }, 'vm/info failed');
    return undefined;
  }
}

/**
 * `hvplug run --detach`: creates and starts the VM, prints its id, and leaves it running. Closing the
 * host only shuts the plugin down; the guest and its record (in the state directory) stay, for ps/stop.
 */
export async function runDetached(ctx: CliContext, out: Output, plugin: string, config: VmConfig): Promise<number> {
  const host = ctx.openHost();
  try {
    const hv = await host.hypervisor(plugin);
    const vmId = randomUUID();
    const vm = await hv.createVm({ vmId, config });
    try {
      await vm.start({});
    } catch (err) {
      // A VM that never ran is of no use detached: remove it and its record rather than leave debris to ps.
      await vm.delete().catch((e: unknown) => ctx.logger.warn({ vmId, err: errorText(e) }, 'cannot delete the VM that failed to start'));
      await host.store.delete(vmId).catch(() => undefined);
      throw err;
    }
    const pid = await pidOf(vm, ctx);
    out.document({ id: vmId, plugin, ...(pid !== undefined ? { pid } : {}) }, () => vmId);
    return EXIT_OK;
  } finally {
    await host.close();
  }
}

/** Attaches to a VM by id from the state directory; an unknown id is a one-line failure naming where we looked. */
async function attachOrFail(host: PluginHost, vmId: string): Promise<ShimVm> {
  const vm = await host.attach(vmId);
  if (!vm) throw new CliFailure(`no VM "${vmId}" in the state directory ${host.stateDir}`);
  return vm;
}

interface PsRow {
  id: string;
  plugin: string;
  status: VmStatus | 'unknown';
  pid?: number;
  created: string;
  /** Another live host that drives the VM: ps shows it as its record says and leaves it alone. */
  owner?: string;
  error?: string;
}

export const psCommand = defineCommand({
  name: 'ps',
  summary: 'list the VMs in the state directory with their live status',
  description:
    'Lists every VM recorded in the state directory (--state-dir, else $HVPLUG_STATE_DIR, else $XDG_STATE_HOME/hvplug), ' +
    'asking its plugin for the live status: each VM is re-attached, so a VM whose VMM went away shows as lost. ' +
    'The pid is the guest\'s, when the plugin reports one for a running or paused VM. ' +
    'An unreadable record, or a VM whose plugin cannot be reached, is reported on stderr. VMs keep running after ps exits.',
  flags: { json: { type: 'boolean', help: 'a JSON array of {id, plugin, status, pid, created}' } },
  positionals: [],
  options: z.object({ json: flagSet() }),
  async action({ json }, ctx) {
    const host = ctx.openHost();
    const rows: PsRow[] = [];
    try {
      const { records, errors } = await host.records();
      for (const e of errors) process.stderr.write(`${safeText(`hvplug: VM record ${e.where}: ${e.message}`)}\n`);
      // One at a time: attaching starts each plugin once and recovers VMs in order, so the output is stable.
      for (const r of [...records].sort((a, b) => a.createdAt.localeCompare(b.createdAt))) {
        const row: PsRow = { id: r.vmId, plugin: r.plugin, status: 'unknown', created: r.createdAt };
        try {
          const vm = await host.attach(r.vmId);
          if (vm?.ownedBy !== undefined) {
            row.status = vm.status;
            row.owner = vm.ownedBy;
          } else if (vm) {
            row.status = vm.status;
            const pid = await pidOf(vm, ctx);
            if (pid !== undefined) row.pid = pid;
          }
        } catch (err) {
          // The plugin could not be started or asked: the VM may well be running, so it is not called lost.
          row.error = errorText(err);
          process.stderr.write(`${safeText(`hvplug: VM ${r.vmId}: cannot reach plugin ${r.plugin}: ${row.error}`)}\n`);
        }
        rows.push(row);
      }
    } finally {
      await host.close();
    }
    ctx.output(json).document(rows, () =>
      table([
        ['ID', 'PLUGIN', 'STATUS', 'PID', 'CREATED', 'OWNER'],
        ...rows.map((r) => [r.id, r.plugin, r.status, r.pid !== undefined ? String(r.pid) : '-', r.created, r.owner ?? '-'].map(safeLine)),
      ]),
    );
    return EXIT_OK;
  },
});

const IdOptions = { id: nonEmpty('a VM id'), json: flagSet() };
const idPositional = [{ name: 'id', required: true, help: 'the VM id, as printed by run --detach and listed by ps' }] as const;
const jsonFlag = { type: 'boolean', help: 'print {id, status} as JSON' } as const;

export const stopCommand = defineCommand({
  name: 'stop',
  summary: 'stop a VM from the state directory and delete it (unless --keep)',
  description:
    'Re-attaches to the VM, stops it (gracefully, or at once with --force), then deletes it so that its record leaves the state directory. ' +
    'With --keep the stopped VM and its record stay. A lost VM (its VMM is gone) has nothing to stop: its record is removed. ' +
    'Exits 1 when no VM has this id.',
  flags: {
    force: { type: 'boolean', help: 'power the VM off at once instead of asking the guest to shut down' },
    keep: { type: 'boolean', help: 'keep the stopped VM and its record (do not delete)' },
    json: { type: 'boolean', help: 'print {id, status, deleted} as JSON' },
  },
  positionals: idPositional,
  options: z.object({ ...IdOptions, force: flagSet(), keep: flagSet() }),
  async action(opts, ctx) {
    const host = ctx.openHost();
    try {
      const vm = await attachOrFail(host, opts.id);
      if (vm.status === 'running' || vm.status === 'paused') await vm.stop({ force: opts.force });
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
    description: `Re-attaches to the VM in the state directory and asks its plugin to ${name} it; prints the id. Exits 1 when no VM has this id or the plugin refuses.`,
    flags: { json: jsonFlag },
    positionals: idPositional,
    options: z.object(IdOptions),
    async action(opts, ctx) {
      const host = ctx.openHost();
      try {
        const vm = await attachOrFail(host, opts.id);
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
