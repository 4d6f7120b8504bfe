import * as z from 'zod';
import { HvplugError } from '../core/index.js';
import { checkOwnStateDir } from '../daemon/index.js';
import { flagSet, secondsValue } from './args.js';
import { defineCommand } from './command.js';
import { CliFailure, EXIT_OK, UsageError } from './errors.js';
import { RunEnding, watchSignals } from './run-ending.js';
import { describePlugin, PREFIX, verdict } from './run-format.js';
import { reasonJson, VmSession } from './vm-session.js';
import { buildVmConfig, defaultPlugin } from './vm-config.js';
import { MISPLACED_CONFIG, VM_FLAGS, VmFlagOptions } from './vm-flags.js';
import { ensureNameFree } from './vm-ref.js';
import { createDetached } from './lifecycle.js';

const RunOptions = z.object({
  ...VmFlagOptions,
  timeout: z.optional(secondsValue()),
  detach: flagSet(),
  json: flagSet(),
});

export const runCommand = defineCommand({
  name: 'run',
  summary: 'boot a VM through a plugin, show its events and console, stop it cleanly',
  description:
    'Creates and boots a VM through the plugin, prints its lifecycle events and its console as the guest writes it, ' +
    'and stops then deletes the VM on Ctrl-C or SIGTERM (a second one forces it off), when the guest ends, or after --timeout. ' +
    'Exits 0 when the run ended as asked (interrupted, timed out, or the guest powered off); 1 when the guest crashed, ' +
    'exited with an error or the plugin failed. Without --kernel the plugin boots its default guest. ' +
    'With --detach the VM is left running once booted: its id is printed, and the other commands find it in the state ' +
    'directory by id, name or id prefix. hvplug run --detach is hvplug create then hvplug start. ' +
    'The plugins config goes before the command, the VM config after it: hvplug --config plugins.toml run --vm-config vm.json.',
  flags: {
    ...VM_FLAGS,
    timeout: { type: 'string', value: '<seconds>', help: 'stop the VM this long after the boot began' },
    detach: { type: 'boolean', short: 'd', help: 'boot the VM, print its id and leave it running (manage it with ps, stop, pause, resume)' },
    json: { type: 'boolean', help: 'one JSON object per line: plugin, event, vm, console-source, console, ending, deleted, result; with --detach one {id, plugin, pid}' },
  },
  positionals: [],
  misplaced: MISPLACED_CONFIG,
  options: RunOptions,
  async action(opts, ctx) {
    const out = ctx.output(opts.json);
    // Bad flags and config files are reported before any process starts.
    const config = await buildVmConfig({ ...opts, config: opts['vm-config'] });
    const plugin = opts.plugin ?? defaultPlugin();
    if (opts.detach) {
      // A detached VM outlives this process, so nothing is left here to count a timeout down.
      if (opts.timeout !== undefined) throw new UsageError('--timeout cannot be used with --detach (stop the VM with hvplug stop <id>)');
      return createDetached(ctx, ctx.output(opts.json), plugin, config, true);
    }
    // A host of its own, daemon or not: on another user's state directory, said so before any process starts.
    await checkOwnStateDir(ctx.stateDir, { foregroundRun: true });
    const ending = new RunEnding();
    const unwatch = watchSignals(ending, (signal, step) => {
      if (step === 'force') {
        ctx.logger.warn({ signal }, 'forcing the VM off');
        return;
      }
      process.stderr.write(`hvplug: ${signal} again: leaving now; the VM may still be running\n`);
      process.exit(130);
    });
    const host = ctx.openHost();
    host.on('plugin-failed', (e) => {
      if (e.plugin === plugin) ending.end({ kind: 'plugin-failed', error: e.error });
    });
    let vmId: string | undefined;
    try {
      await ensureNameFree(host, config.name);
      const starting = ctx.progress((t) => `starting plugin ${plugin}: ${t}`);
      const hv = await host.hypervisor(plugin).finally(() => starting.done());
      out.record({ type: 'plugin', plugin, ...hv.info.plugin, protocolVersion: hv.info.protocolVersion }, describePlugin(hv.info));
      const reason = ending.reason;
      if (reason) {
        // Interrupted while the plugin was starting: there is no VM to stop.
        out.record({ type: 'result', ok: true, ...reasonJson(reason) }, undefined);
        return EXIT_OK;
      }
      // The host drops a deleted VM's record in the background and close() does not wait for it; awaiting
      // the same delete here keeps a CLI that exits right after from leaving a stale record behind.
      const session = new VmSession(hv, out, ending, ctx.logger, (id) => host.store.delete(id), (what) => ctx.progress(what));
      vmId = session.vmId;
      host.on('protocol-violation', (e) => {
        if (e.plugin === plugin) session.noteViolation(e.error.message);
      });
      const ended = await session.run(config, opts.timeout);
      const v = verdict(ended);
      out.record({ type: 'result', ok: v.ok, vmId, ...reasonJson(ended), ...(v.ok ? {} : { message: v.message }) }, v.ok ? `${PREFIX} done` : undefined);
      if (!v.ok) throw new CliFailure(v.message);
      return EXIT_OK;
    } catch (err) {
      if (!(err instanceof CliFailure)) {
        const code = err instanceof HvplugError ? err.code : 'Error';
        out.record({ type: 'result', ok: false, ...(vmId ? { vmId } : {}), error: { code, message: err instanceof Error ? err.message : String(err) } }, undefined);
      }
      throw err;
    } finally {
      await host.close();
      unwatch();
    }
  },
});
