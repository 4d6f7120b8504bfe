import * as z from 'zod';
import type { VmEvent } from 'hvplug/protocol';
import { DROPPED_NOTICE, DroppedNotice, EVENT_NOTICE, EventNotice, openDaemonHost, type VmDeletedEvent } from '../daemon/index.js';
import { flagSet, validate } from './args.js';
import type { Command } from './command.js';
import type { CliContext } from './context.js';
import { CliFailure, EXIT_OK } from './errors.js';
import { Output } from './output.js';
import { safeLine } from './safe-text.js';
import { resolveRef } from './vm-ref.js';
import { firstSignal } from './signals.js';

const Options = z.object({ json: flagSet() });

/** What an event says beyond its type, for people. */
function detail(e: VmEvent | VmDeletedEvent): string {
  switch (e.type) {
    case 'exited':
      return ` (${e.signal ? `signal ${e.signal}` : `code ${e.code ?? '?'}`}${e.reason ? `: ${e.reason}` : ''})`;
    case 'crashed':
    case 'lost':
      return `: ${e.reason}`;
    case 'device-added':
    case 'device-removed':
      return ` ${e.deviceId}`;
    default:
      return '';
  }
}

/** One line per event: time, VM (its name, else its id), type and detail. Opaque state changes are for --json only. */
function humanLine(n: EventNotice): string | undefined {
  if (n.event.type === 'state') return undefined;
  return safeLine(`${n.event.time}  ${n.name ?? n.event.vmId}  ${n.event.type}${detail(n.event)}`);
}

async function events(vmRefs: readonly string[], opts: z.output<typeof Options>, ctx: CliContext): Promise<number> {
  const stateDir = ctx.stateDir;
  const host = await openDaemonHost(stateDir);
  // A host of this process's own would see only the events of its own calls: nothing another command does.
  if (!host) throw new CliFailure(`hvplug events needs a running daemon (hvplug daemon) for the state directory ${stateDir}`);
  try {
    const { records } = await host.records();
    const vmIds = vmRefs.map((ref) => resolveRef(records, ref, stateDir).vmId);
    // JSON when asked, and whenever the reader is a program rather than a person.
    const out = new Output(opts.json || !process.stdout.isTTY);
    const client = host.client;
    client.onNotification(EVENT_NOTICE, (params) => {
      const n = EventNotice.safeParse(params);
      if (!n.success) return ctx.logger.warn({ err: n.error.message }, 'the daemon sent an event hvplug cannot read');
      out.record({ plugin: n.data.plugin, ...(n.data.name !== undefined ? { name: n.data.name } : {}), ...n.data.event }, humanLine(n.data));
    });
    client.onNotification(DROPPED_NOTICE, (params) => {
      const n = DroppedNotice.safeParse(params);
      if (!n.success) return;
      const message = `${n.data.count} event(s) dropped: this reader fell behind the daemon`;
      if (out.json) out.record({ type: 'events-dropped', count: n.data.count }, undefined);
      else process.stderr.write(`hvplug: ${message}\n`);
    });
    // Subscribed after the listeners, so that the first event cannot arrive unheard.
    await client.own('subscribe', vmIds.length ? { vmIds } : {});
    const ended = await Promise.race([firstSignal(), client.ended.then(() => 'daemon-gone' as const)]);
    if (ended === 'daemon-gone') throw new CliFailure(`the hvplug daemon (pid ${host.hello.pid}) went away; no more events`);
    return EXIT_OK;
  } finally {
    await host.close();
  }
}

/** Defined by hand rather than with defineCommand: it takes any number of VMs. */
export const eventsCommand: Command = {
  name: 'events',
  summary: 'stream VM events (created, running, paused, exited, lost, device-added, deleted...) as they happen',
  description:
    "Prints the events of the state directory's VMs as the daemon sees them, one a line, until Ctrl-C or SIGTERM: " +
    'those of every VM, or only of the VMs named (ids, names or id prefixes). On a terminal each line is the time, the ' +
    'VM and what happened; piped, or with --json, each line is one JSON object {plugin, name, vmId, seq, time, type, ...}. ' +
    'A reader too slow for the event rate loses events rather than the daemon holding them for it: it is told how many ' +
    '(on stderr, or as {"type":"events-dropped","count":N}). Needs the daemon (hvplug daemon): without it no process ' +
    'watches the VMs. Exits 1 when the daemon goes away.',
  flags: { json: { type: 'boolean', help: 'one JSON object per line (the default when stdout is not a terminal)' } },
  positionals: [{ name: 'vm', required: false, help: 'only the events of this VM (id, name or id prefix); any number of them' }],
  async execute(raw, ctx) {
    return events(raw.positionals, validate(Options, raw.flags), ctx);
  },
};
