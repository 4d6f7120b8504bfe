import type { Logger } from 'pino';
import { AlreadyExistsError, HvplugError, type PluginHost } from '../core/index.js';
import type { MetricsListen, MetricsServer } from '../core/metrics-registry.js';
import { closedToGroup, ensurePrivateDir, shareWithGroup } from '../core/paths.js';
import { MAX_SOCKET_PATH_BYTES, socketPath } from './api.js';
import { acquireDaemonLock, releaseDaemonLock } from './lock.js';
import { DaemonServer } from './server.js';

export interface DaemonRunOptions {
  host: PluginHost;
  logger: Logger;
  /** A line for whoever started the daemon (its stdout, the journal under systemd). */
  say: (line: string) => void;
  /** Resolves when the daemon is to stop (a signal); its value is said as the reason. */
  stop: Promise<string>;
  /** Serve the host's Prometheus metrics over HTTP at this address, GET /metrics, for as long as the daemon runs. */
  metrics?: MetricsListen;
  /**
   * The id of a group whose members may use the socket (0660) besides its owner: the runtime and state directories
   * are then 0710 of that group while the daemon runs, so that they can reach the socket and read the lock that
   * names it, and nothing else there.
   */
  socketGroup?: number;
}

/**
 * Opens the way to the socket and the lock to `gid` (or closes it, undefined), and warns of a directory above that the
 * group cannot pass: theirs to open (or the daemon to be given other directories), not the daemon's.
 */
async function shareDirs(dirs: readonly string[], gid: number | undefined, logger: Logger): Promise<void> {
  for (const dir of dirs) {
    await shareWithGroup(dir, gid);
    const closed = gid === undefined ? undefined : await closedToGroup(dir, gid);
    if (closed) {
      logger.warn(
        { group: gid, dir: closed.dir, mode: closed.mode.toString(8).padStart(4, '0'), below: dir },
        'the socket group cannot reach the socket',
      );
    }
  }
}

/**
 * The daemon's life: take the state directory, listen, re-attach its VMs, serve until `stop`, then let go of all of it.
 * VMs keep running when it stops, as they do when any host closes: the next host (a daemon or a CLI) re-attaches them.
 */
export async function runDaemon({ host, logger, say, stop, metrics, socketGroup }: DaemonRunOptions): Promise<void> {
  const socket = socketPath(host.runtimeDir, host.stateDir);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
    throw new HvplugError(`the daemon's socket path ${socket} is longer than ${MAX_SOCKET_PATH_BYTES} bytes, as a unix socket's may be; use a shorter --runtime-dir`, 'InvalidConfig');
  }
  await ensurePrivateDir(host.runtimeDir);
  const lock = await acquireDaemonLock(host.stateDir, socket, socketGroup);
  if (!lock.ok) {
    const h = lock.holder;
    throw new AlreadyExistsError(`a daemon already serves the state directory ${host.stateDir}: pid ${h.pid} on ${h.hostname}, since ${h.since}, socket ${h.socket}`, String(h.pid));
  }
  // Once the lock is ours, so that a refused daemon changes nothing of the one that serves. Without --group they are
  // made 0700 again, should a daemon with one have died without closing them. (A runtime directory that daemons of
  // two state directories share is as the last of them to start or stop left it.)
  const dirs = [host.runtimeDir, host.stateDir];
  try {
    await shareDirs(dirs, socketGroup, logger);
  } catch (err) {
    if (socketGroup !== undefined) await shareDirs(dirs, undefined, logger).catch(() => undefined);
    await releaseDaemonLock(lock.info).catch(() => undefined);
    throw err;
  }
  host.on('vm-recovered', (e) => logger.info({ vmId: e.vmId, plugin: e.plugin }, 're-attached VM'));
  host.on('vm-lost', (e) => logger.warn({ vmId: e.vmId, plugin: e.plugin, reason: e.reason }, 'VM lost'));
  host.on('plugin-started', (e) => logger.info({ plugin: e.plugin, pid: e.pid, restart: e.restart }, 'plugin started'));
  host.on('record-error', (e) => logger.error({ where: e.where, err: e.message }, 'VM record error'));
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  let server: DaemonServer | undefined;
  let metricsServer: MetricsServer | undefined;
  try {
    server = await DaemonServer.listen({ host, socket, logger, ready, socketGroup });
    say(`hvplug daemon: pid ${process.pid}, state directory ${host.stateDir}, socket ${socket}`);
    if (metrics) {
      // Before the re-attach, so that its vm/recover calls (and any plugin that fails during it) are counted and seen.
      metricsServer = await host.serveMetrics(metrics).catch((err: Error) => {
        throw new HvplugError(`cannot serve metrics on ${metrics.host ?? '127.0.0.1'}:${metrics.port}: ${err.message}`, 'InvalidConfig');
      });
      say(`hvplug daemon: metrics at ${metricsServer.url}`);
    }
    const reattached = host.reattach();
    const report = await Promise.race([reattached, stop.then(() => undefined)]);
    if (report) {
      markReady();
      const parts = [`${report.recovered.length} re-attached`, `${report.lost.length} lost`];
      if (report.deleted.length) parts.push(`${report.deleted.length} deleted (deletes cut short by a host's end, finished)`);
      if (report.owned.length) parts.push(`${report.owned.length} driven by other hosts`);
      if (report.errors.length) parts.push(`${report.errors.length} with errors (logged as "VM record error")`);
      say(`hvplug daemon: ready (${parts.join(', ')})`);
    }
    const reason = await stop;
    say(`hvplug daemon: ${reason}: shutting down; VMs keep running`);
  } finally {
    markReady();
    await metricsServer?.close();
    await server?.close().catch((err: Error) => logger.warn({ err: err.message }, 'cannot close the daemon socket'));
    await host.close();
    await releaseDaemonLock(lock.info).catch((err: Error) => logger.warn({ err: err.message }, 'cannot remove the daemon lock'));
    if (socketGroup !== undefined) {
      await shareDirs(dirs, undefined, logger).catch((err: Error) => logger.warn({ err: err.message }, 'cannot make the daemon\'s directories 0700 again'));
    }
  }
}
