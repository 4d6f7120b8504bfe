import { join, resolve } from 'node:path';
import { z } from 'zod';
import { defaultConfigFile, PluginHost } from '../core/index.js';
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
    'state directory: its record moves with it, so that afterwards exactly one record exists, in <destination>. The ' +
    "destination host finds plugins from the same config and plugin directories; --plugin names its plugin (default: the VM's), " +
    'which may be a listening plugin on another machine (connect = "tls://..." in the config), and --address the ' +
    "address the source's VMM reaches it at (without it: a unix socket, this machine only). The destination's runtime " +
    'directory is <destination>/run unless --to-runtime-dir says otherwise. Prints the downtime. A migration left ' +
    'undecided (an answer that never came) is reported with both records kept; see docs/migration.md.',
  flags: {
    plugin: { type: 'string', value: '<name>', help: "the destination's plugin (default: the VM's own plugin name)" },
    address: { type: 'string', value: '<ip|name>', help: 'the destination address the VMM sends to (TCP); default a unix socket' },
    'to-runtime-dir': { type: 'string', value: '<dir>', help: "the destination host's runtime directory (default <destination>/run)" },
    json: { type: 'boolean', help: 'print the migration report as JSON' },
  },
  positionals: [
    { name: 'vm', required: true, help: 'the VM: its id, its name, or an id prefix of at least 4 characters' },
    { name: 'destination', required: true, help: "the destination host's state directory" },
  ] as const,
  options: z.object({
    vm: nonEmpty('a VM id, name or id prefix'),
    destination: dirPath(),
    plugin: nonEmpty('a plugin name').optional(),
    address: nonEmpty('an address').optional(),
    'to-runtime-dir': dirPath().optional(),
    json: flagSet(),
  }),
  async action(opts, ctx) {
    const host = await ctx.vmHost();
    if (!(host instanceof PluginHost)) {
      await host.close();
      throw new CliFailure(`the state directory ${host.stateDir} is served by a daemon: migrate needs this process to drive both hosts (stop the daemon first)`);
    }
    const target = resolve(opts.destination);
    if (target === resolve(host.stateDir)) {
      await host.close();
      throw new CliFailure(`the destination ${target} is the VM's own state directory`);
    }
    const g = ctx.globals;
    const destination = new PluginHost({
      // The same plugins as the source host's (openHost): empty, not undefined, when there is no config file.
      configFile: g.config ?? defaultConfigFile() ?? '',
      pluginDirs: g['plugin-dir'],
      stateDir: target,
      runtimeDir: opts['to-runtime-dir'] ?? join(target, 'run'),
      logLevel: g['log-level'] ?? 'warn',
      logger: ctx.logger,
    });
    try {
      const { vm } = await attachRef(host, opts.vm);
      const report = await host.migrate(vm.id, destination, {
        plugin: opts.plugin,
        address: opts.address,
        onProgress: (p) => ctx.logger.info({ vmId: vm.id, ...p.value }, 'migrating'),
      });
      ctx.output(opts.json).document(report, () =>
        safeLine(
          `${report.vmId} migrated to ${target} via ${report.uri}${report.tls ? ' (TLS)' : ''}: downtime ${report.downtimeMs === undefined ? 'unknown' : `${Math.round(report.downtimeMs)} ms`}, ` +
            `${report.transferredBytes} bytes in ${Math.round(report.totalMs)} ms`,
        ),
      );
      return EXIT_OK;
    } finally {
      await host.close();
      await destination.close();
    }
  },
});
