import * as z from 'zod/mini';
import { groupId, runDaemon } from '../daemon/index.js';
import { nonEmpty } from './args.js';
import { defineCommand } from './command.js';
import { EXIT_OK, UsageError } from './errors.js';

/** SIGTERM (systemd, kill) and SIGINT (Ctrl-C) both end the daemon cleanly. */
function firstSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      // A second signal while it shuts down is not a reason to die half way: the VMs' records are being finalised.
      const ignore = (): void => undefined;
      process.on('SIGTERM', ignore);
      process.on('SIGINT', ignore);
      resolve(signal);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

/** `host:port` or `[v6]:port`: where the metrics endpoint listens. A host is required, so that binding to every interface is said. */
const ListenAddress = z.pipe(
  z.string().check(z.regex(/^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253}):\d{1,5}$/, 'expected <host:port>, e.g. 127.0.0.1:9464 or [::1]:9464')),
  z.transform((s, ctx) => {
    const at = s.lastIndexOf(':');
    const port = Number(s.slice(at + 1));
    if (port > 65_535) ctx.issues.push({ code: 'custom', message: `port ${port} is above 65535`, input: s });
    return { host: s.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port };
  }),
);

export const daemonCommand = defineCommand({
  name: 'daemon',
  summary: 'run the host of the state directory in the foreground; the other commands then go through it',
  description:
    'Runs one long-lived host for the state directory: it re-attaches the VMs recorded there, then serves the VM ' +
    'commands (ps, info, create, start, run --detach, pause, resume, stop, kill, rm, save, restore, attach-device, ' +
    'detach-device, resize, migrate from and to its state directory) of every hvplug process over a unix socket in the runtime directory (mode 0600). With --group ' +
    'the socket is 0660 and owned by that group, and while the daemon runs the runtime and state directories are 0710 of ' +
    'that group, so that its members can reach the socket and read the lock that names it (daemon.json), and nothing else ' +
    'there: they get every VM command through the daemon, none of its files (a console log, which hvplug logs and ' +
    'hvplug console read themselves, is not theirs). The directories above must let them pass; the daemon warns of one that does not. Membership ' +
    "is as good as the daemon's user, as it is with libvirt's socket group: a member's VM may use any file that user may. Without a " +
    'daemon each command runs a host of its own, starting the plugin and re-attaching the VM every time. A second daemon ' +
    'on the same state directory is refused. SIGTERM or SIGINT stops it; the VMs keep running and the next host ' +
    '(another daemon, or a command without one) re-attaches them. Status lines go to stdout, logs to stderr.',
  flags: {
    metrics: {
      type: 'string',
      value: '<host:port>',
      help: 'also serve the host\'s Prometheus metrics over HTTP at http://<host:port>/metrics (e.g. 127.0.0.1:9464; 0.0.0.0:9464 for a scraper on another machine; [::1]:9464; port 0 picks one and says it)',
    },
    group: {
      type: 'string',
      value: '<name>',
      help: 'let this group use the daemon too (a name or a number): the socket 0660, the runtime and state directories 0710, all owned by the group',
    },
  },
  positionals: [],
  options: z.object({ metrics: z.optional(ListenAddress), group: z.optional(nonEmpty('a group name')) }),
  async action(opts, ctx) {
    const socketGroup = opts.group === undefined ? undefined : await groupId(opts.group);
    if (opts.group !== undefined && socketGroup === undefined) throw new UsageError(`--group: no group named "${opts.group}" on this system`);
    // Listened for before anything starts, so that a signal during the re-attach is a clean stop too.
    const stop = firstSignal();
    await runDaemon({ host: ctx.openHost(), logger: ctx.logger, say: (line) => void process.stdout.write(`${line}\n`), stop, metrics: opts.metrics, socketGroup });
    return EXIT_OK;
  },
});
