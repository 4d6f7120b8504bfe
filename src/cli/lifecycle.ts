import { randomUUID } from 'node:crypto';
import * as z from 'zod';
import type { VmConfig } from 'hvplug/protocol';
import { VmOwnedError, type VmRecord } from '../core/index.js';
import { RemoteHost, type VmHost } from '../daemon/index.js';
import { describeOwner, VmLeases } from '../core/ownership.js';
import { flagSet, nonEmpty } from './args.js';
import { defineCommand } from './command.js';
import type { CliContext } from './context.js';
import { CliFailure, EXIT_OK } from './errors.js';
import type { Output } from './output.js';
import { safeLine } from './safe-text.js';
import { buildVmConfig, defaultPlugin } from './vm-config.js';
import { MISPLACED_CONFIG, VM_FLAGS, VmFlagOptions } from './vm-flags.js';
import { attachRef, ensureNameFree, findRecord } from './vm-ref.js';
import { errorText, pidOf } from './vm-util.js';

/**
 * `create`, and `run --detach` (create + start): prints the new VM's id and leaves it to later commands.
 * Closing the host only shuts the plugin down; the VM and its record (in the state directory) stay.
 */
export async function createDetached(ctx: CliContext, out: Output, plugin: string, config: VmConfig, start: boolean): Promise<number> {
  const host = await ctx.vmHost();
  try {
    await ensureNameFree(host, config.name);
    const hv = await host.hypervisor(plugin);
    const vmId = randomUUID();
    const vm = await hv.createVm({ vmId, config });
    if (start) {
      try {
        await vm.start({});
      } catch (err) {
        // A VM that never ran is of no use detached: remove it and its record rather than leave debris to ps.
        await vm.delete().catch((e: unknown) => ctx.logger.warn({ vmId, err: errorText(e) }, 'cannot delete the VM that failed to start'));
        await host.store.delete(vmId).catch(() => undefined);
        throw err;
      }
    }
    const pid = await pidOf(vm, ctx);
    out.document({ id: vmId, ...(config.name !== undefined ? { name: config.name } : {}), plugin, status: vm.status, ...(pid !== undefined ? { pid } : {}) }, () => vmId);
    return EXIT_OK;
  } finally {
    await host.close();
  }
}

const vmPositional = { name: 'vm', required: true, help: 'the VM: its id, its name, or an id prefix of at least 4 characters' } as const;
const VmRef = nonEmpty('a VM id, name or id prefix');

export const createCommand = defineCommand({
  name: 'create',
  summary: 'create a VM without booting it; prints its id (boot it with start)',
  description:
    'Creates a VM through the plugin and leaves it created, not booted: its id is printed, and hvplug start boots it. ' +
    'The flags are those of run. The plugins config goes before the command, the VM config after it: ' +
    'hvplug --config plugins.toml create --vm-config vm.json.',
  flags: { ...VM_FLAGS, json: { type: 'boolean', help: 'print {id, name, plugin, status} as JSON' } },
  positionals: [],
  misplaced: MISPLACED_CONFIG,
  options: z.object({ ...VmFlagOptions, json: flagSet() }),
  async action(opts, ctx) {
    const config = await buildVmConfig({ ...opts, config: opts['vm-config'] });
    return createDetached(ctx, ctx.output(opts.json), opts.plugin ?? defaultPlugin(), config, false);
  },
});

export const startCommand = defineCommand({
  name: 'start',
  summary: 'boot a created or stopped VM; prints its id',
  description: 'Re-attaches to the VM in the state directory and boots it; it keeps running after hvplug exits. Exits 1 when no VM matches or the plugin refuses.',
  flags: { json: { type: 'boolean', help: 'print {id, status, pid} as JSON' } },
  positionals: [vmPositional],
  options: z.object({ vm: VmRef, json: flagSet() }),
  async action(opts, ctx) {
    const host = await ctx.vmHost();
    try {
      const { vm } = await attachRef(host, opts.vm);
      await vm.start({});
      const pid = await pidOf(vm, ctx);
      ctx.output(opts.json).document({ id: vm.id, status: vm.status, ...(pid !== undefined ? { pid } : {}) }, () => vm.id);
      return EXIT_OK;
    } finally {
      await host.close();
    }
  },
});

export const killCommand = defineCommand({
  name: 'kill',
  summary: 'power a VM off at once, without asking the guest; the VM stays (start it again or rm it)',
  description:
    'Forces the VM off without a grace period (hvplug stop asks the guest first), and keeps it and its record, stopped: ' +
    'hvplug start boots it again, hvplug rm deletes it. Exits 1 when the VM is not running or paused.',
  flags: { json: { type: 'boolean', help: 'print {id, status} as JSON' } },
  positionals: [vmPositional],
  options: z.object({ vm: VmRef, json: flagSet() }),
  async action(opts, ctx) {
    const host = await ctx.vmHost();
    try {
      const { vm } = await attachRef(host, opts.vm);
      if (vm.status !== 'running' && vm.status !== 'paused') throw new CliFailure(`VM ${vm.id} is ${vm.status}, not running: nothing to kill`);
      await vm.stop({ force: true, graceMs: 0 });
      ctx.output(opts.json).document({ id: vm.id, status: vm.status }, () => vm.id);
      return EXIT_OK;
    } finally {
      await host.close();
    }
  },
});

/**
 * Drops the record of a VM whose plugin cannot be reached, unless a live host holds the VM: that host's
 * record is its own to remove. The lease is taken for the removal so that no host re-attaches meanwhile.
 */
async function forgetRecord(host: VmHost, record: VmRecord): Promise<void> {
  // A daemon takes the lease for the removal itself.
  if (host instanceof RemoteHost) return host.store.delete(record.vmId);
  const leases = new VmLeases(host.stateDir);
  const lease = await leases.acquire(record.vmId);
  if (!lease.ok) throw new VmOwnedError(record.vmId, describeOwner(lease.owner));
  try {
    await host.store.delete(record.vmId);
  } finally {
    await leases.release(record.vmId);
  }
}

export const rmCommand = defineCommand({
  name: 'rm',
  summary: 'delete a VM and its record (refuses a running VM unless --force)',
  description:
    'Deletes the VM through its plugin and removes its record from the state directory. A running or paused VM is refused ' +
    'unless --force, which powers it off first. With --force, a VM whose plugin cannot be started or reached (removed from ' +
    'the config, uninstalled) loses its record all the same; the output says so, as the plugin could not stop or clean up ' +
    'anything it had left.',
  flags: {
    force: { type: 'boolean', short: 'f', help: 'power a running VM off first; remove the record of a VM whose plugin is gone' },
    json: { type: 'boolean', help: 'print {id, deleted, pluginReached} as JSON' },
  },
  positionals: [vmPositional],
  options: z.object({ vm: VmRef, force: flagSet(), json: flagSet() }),
  async action(opts, ctx) {
    const host = await ctx.vmHost();
    const out = ctx.output(opts.json);
    try {
      const record = await findRecord(host, opts.vm);
      let vm;
      try {
        vm = await host.attach(record.vmId);
      } catch (err) {
        const why = `its plugin ${record.plugin} could not be reached (${errorText(err)})`;
        if (!opts.force) throw new CliFailure(`VM ${record.vmId}: ${why}; hvplug rm --force removes its record without the plugin`);
        await forgetRecord(host, record);
        out.document({ id: record.vmId, deleted: true, pluginReached: false, reason: errorText(err) }, () =>
          safeLine(`${record.vmId}: record removed; ${why}, so nothing it may have left running was stopped or cleaned up`),
        );
        return EXIT_OK;
      }
      if (!vm) {
        // A record marked deleting (its host died during a delete): the attach finished that delete, as rm asks.
        if (record.deleting !== undefined) {
          out.document({ id: record.vmId, deleted: true, pluginReached: true }, () => record.vmId);
          return EXIT_OK;
        }
        throw new CliFailure(`VM ${record.vmId} left the state directory ${host.stateDir} meanwhile`);
      }
      if (vm.status === 'running' || vm.status === 'paused') {
        if (!opts.force) throw new CliFailure(`VM ${vm.id} is ${vm.status}: stop it first (hvplug stop), or use hvplug rm --force to power it off and delete it`);
        await vm.stop({ force: true, graceMs: 0 });
      }
      if (vm.status === 'lost') {
        // The plugin has nothing left to delete; a failure to tidy its side must not keep the record alive.
        await vm.delete().catch((err: unknown) => ctx.logger.info({ vmId: vm.id, err: errorText(err) }, 'vm/delete of a lost VM failed'));
      } else await vm.delete();
      // The host drops the record in the background; awaiting it here keeps an exiting CLI from leaving it stale.
      await host.store.delete(vm.id);
      out.document({ id: vm.id, deleted: true, pluginReached: true }, () => vm.id);
      return EXIT_OK;
    } finally {
      await host.close();
    }
  },
});
