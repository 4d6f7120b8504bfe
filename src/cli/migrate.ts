import { resolve } from 'node:path';
import { z } from 'zod';
import type { Progress } from 'hvplug/protocol';
import { PluginHost, type MigrationReport } from '../core/index.js';
import { openDestination } from '../daemon/migration.js';
import { dirPath, flagSet, nonEmpty } from './args.js';
import { defineCommand } from './command.js';
import { CliFailure, EXIT_OK } from './errors.js';
import { safeLine } from './safe-text.js';
import { attachRef } from './vm-ref.js';

export const migrateCommand = defineCommand({
  name: 'migrate',
  summary: "live-migrate a running VM to another host's state directory (its plugin may run on another machine)",
  description:
    'Moves a running VM, live, from the host of the state directory (--state-dir) to the host of <destination>, another ' +
    'state directory: its record moves with it, so that afterwards exactly one record exists, in <destination>. A ' +
    "destination no daemon serves finds plugins from the same config and plugin directories as the source's host (a daemon, its own); --plugin names its plugin (default: the VM's), " +
    'which may be a listening plugin on another machine (connect = "tls://..." in the config), and --address the ' +
    "address the source's VMM reaches it at (without it: a unix socket, this machine only). Either state directory may be " +
    "served by `hvplug daemon`: the source's daemon then drives the migration, and the destination's daemon receives the " +
    "VM through its API; a destination no daemon serves is opened by whoever drives (its runtime directory is " +
    '<destination>/run unless --to-runtime-dir says otherwise). Prints the downtime. A migration left ' +
    'undecided (an answer that never came) is reported with both records kept; see docs/migration.md.',
  flags: {
    plugin: { type: 'string', value: '<name>', help: "the destination's plugin (default: the VM's own plugin name)" },
    address: { type: 'string', value: '<ip|name>', help: 'the destination address the VMM sends to (TCP); default a unix socket' },
    'to-runtime-dir': { type: 'string', value: '<dir>', help: "the runtime directory of a destination no daemon serves (default <destination>/run)" },
    json: { type: 'boolean', help: 'print the migration report as JSON' },
  },
  positionals: [
    { name: 'vm', required: true, help: 'the VM: its id, its name, or an id prefix of at least 4 characters' },
    { name: 'destination', required: true, help: "the destination host's state directory" },
  ] as const,
  options: z.object({
    vm: nonEmpty('a VM id, name or id prefix'),
    destination: dirPath(),
    plugin: z.optional(nonEmpty('a plugin name')),
    address: z.optional(nonEmpty('an address')),
    'to-runtime-dir': z.optional(dirPath()),
    json: flagSet(),
  }),
  async action(opts, ctx) {
    const host = await ctx.vmHost();
    const target = resolve(opts.destination);
    try {
      if (target === resolve(host.stateDir)) throw new CliFailure(`the destination ${target} is the VM's own state directory`);
      const { vm } = await attachRef(host, opts.vm);
      const onProgress = (p: Progress): void => ctx.logger.info({ vmId: vm.id, ...p.value }, 'migrating');
      const settings = { plugin: opts.plugin, address: opts.address, onProgress };
      let report: MigrationReport;
      if (host instanceof PluginHost) {
        // This process drives the hand-off; the destination is its daemon, or a host of this process's own.
        const destination = await openDestination(host, target, opts['to-runtime-dir']);
        try {
          report = await host.migrate(vm.id, destination, settings);
        } finally {
          await destination.close();
        }
      } else {
        // The source's daemon owns the VM and drives the hand-off itself.
        report = await host.migrate(vm.id, { stateDir: target, ...(opts['to-runtime-dir'] === undefined ? {} : { runtimeDir: opts['to-runtime-dir'] }) }, settings);
      }
      ctx.output(opts.json).document(report, () =>
        safeLine(
          `${report.vmId} migrated to ${target} via ${report.uri}${report.tls ? ' (TLS)' : ''}: downtime ${report.downtimeMs === undefined ? 'unknown' : `${Math.round(report.downtimeMs)} ms`}, ` +
            `${report.transferredBytes} bytes in ${Math.round(report.totalMs)} ms`,
        ),
      );
      return EXIT_OK;
    } finally {
      await host.close();
    }
  },
});
