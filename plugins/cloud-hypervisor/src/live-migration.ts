// Live migration with Cloud Hypervisor's own (docs/live_migration.md upstream): the destination's VMM, started
// with no VM, runs vm.receive-migration, which the VMM answers only once the VM is in; the source's
// vm.send-migration hands the VM to the VMM's migration worker and is answered at once. Both sides follow the
// event monitor: migration-receive-ready (listening), migration-receive-finished (the VM runs there);
// migration-started, migration-memory-iteration, migration-finished / migration-failed at the source, whose
// VMM then exits. The API reports no byte counts or downtime: see sendVm for what is measured instead.
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { errors, PluginError, type CallContext } from 'hvplug/plugin-sdk';
import type { ResultInputOf } from 'hvplug/protocol';
import { chCall } from './errors.js';
import { eventTimeMs, type ChEvent } from './event-monitor.js';
import { killVmm } from './launcher.js';
import type { ChVm } from './vm.js';

/** How often the event file is read while a migration call waits, besides inotify. */
const POLL_MS = 20;
/** A sent VM's VMM exits by itself right after migration-finished; after this it is killed. */
const SOURCE_EXIT_MS = 10_000;
/** How often a TCP port chosen for the destination is tried again when another process took it meanwhile. */
const PORT_TRIES = 3;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A free TCP port on `host`. vm.receive-migration binds the port it is given and has no way to say which one
 * the kernel chose for port 0, so the plugin asks the kernel first; another process may take it in between
 * (the VMM then answers "Error binding to TCP socket", and receiveVm tries again).
 */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const addr = probe.address();
      probe.close(() => (addr !== null && typeof addr === 'object' ? resolve(addr.port) : reject(new Error(`no TCP port on ${host}`))));
    });
  });
}

/**
 * vm/receiveMigration on a VM whose VMM has just started (no VM created): vm.receive-migration on a unix socket
 * in the VM's directory, or on TCP at `address`. Resolves with the URI once the VMM writes
 * migration-receive-ready (it listens); the VM is announced running when migration-receive-finished comes. The
 * request itself stays open until then.
 */
export async function receiveVm(vm: ChVm, address: string | undefined, signal: AbortSignal): Promise<string> {
  const host = address?.includes(':') ? `[${address}]` : address;
  for (let attempt = 1; ; attempt++) {
    const url = host === undefined ? `unix:${vm.paths.migrateSocket}` : `tcp:${host}:${await freePort(address!)}`;
    try {
      await listen(vm, url, signal);
      return url;
    } catch (err) {
      const portTaken = host !== undefined && err instanceof PluginError && /Error binding to TCP socket/.test(err.message);
      if (!portTaken || attempt >= PORT_TRIES) throw err;
    }
  }
}

async function listen(vm: ChVm, url: string, signal: AbortSignal): Promise<void> {
  let ready = false;
  let resumed = false;
  vm.watchMigration({
    role: 'incoming',
    onEvent: (e) => {
      switch (e.event) {
        case 'migration-receive-ready':
          ready = true;
          return true;
        case 'resumed':
          resumed = true;
          return true;
        case 'migration-receive-finished':
          vm.watchMigration(undefined);
          // The VM arrives as the source had it: running (the source refuses to send a paused one, but another
          // sender may), booted either way.
          vm.announce('running');
          if (!resumed) vm.announce('paused');
          return true;
        case 'migration-receive-failed':
          vm.log.warn({ vmId: vm.vmId, url }, 'the incoming migration was aborted: the VM stays created (its VMM holds no VM)');
          return true;
        default:
          // restoring, restored, resuming...: the VM being put together, not a change of its status.
          return e.source === 'vm';
      }
    },
  });
  // Answered only once the migration is over: no timeout but the VM's deletion (which kills the VMM).
  const request = chCall(() => vm.client.receiveMigration({ receiver_url: url }, { timeoutMs: 2 ** 31 - 1 }));
  let failure: unknown;
  let answered = false;
  request.then(
    () => {
      answered = true;
      // The events of the whole migration are in the file before the answer.
      void vm.sync().catch(() => 0);
    },
    (err: unknown) => {
      answered = true;
      failure = err;
      if (ready) vm.log.warn({ vmId: vm.vmId, url, err: err instanceof Error ? err.message : String(err) }, 'vm.receive-migration failed');
    },
  );
  while (!ready && !answered) {
    if (signal.aborted) throw new PluginError('Cancelled', 'vm/receiveMigration cancelled');
    await sleep(POLL_MS);
    await vm.sync().catch(() => 0);
  }
  if (!ready) {
    vm.watchMigration(undefined);
    throw failure ?? errors.vmmFailure(`vm.receive-migration on ${url} was answered before the VMM listened`);
  }
}

/** What the VMM process has written so far (/proc/<pid>/io wchar), or undefined when it cannot be read. */
async function bytesWritten(pid: number): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/io`, 'utf8').catch(() => undefined);
  const m = text === undefined ? null : /^wchar:\s*(\d+)$/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

/**
 * vm/migrate: vm.send-migration to `uri` (`local` for a unix socket: the memory, always shared, goes as file
 * descriptors), then the event monitor until migration-finished or migration-failed. The API offers no measure
 * of progress: each memory iteration is reported by its number, without a percentage. The answer's figures are
 * the plugin's: total and downtime from the VMM's own event times (migration-started → migration-finished, and
 * the final phase's `paused` → migration-finished, which ends once the destination has resumed the VM: an upper
 * bound), and the bytes the VMM process wrote meanwhile (/proc/<pid>/io, its log and event writes included; with
 * `local` the memory itself is not written). On success the source VMM exits by itself and nothing of the VM is
 * left here; on migration-failed the VMM resumes the VM, and the call fails with it running here.
 */
export async function sendVm(vm: ChVm, uri: string, ctx: CallContext): Promise<ResultInputOf<'vm/migrate'>> {
  const pid = vm.vmm?.pid;
  if (pid === undefined) throw errors.vmmFailure(`the VM's VMM is not running`);
  const wallStart = Date.now();
  const before = await bytesWritten(pid);
  let after = before;
  const times: { started?: number; paused?: number; finished?: number } = {};
  let outcome: 'finished' | 'failed' | undefined;
  vm.watchMigration({
    role: 'outgoing',
    onEvent: (e: ChEvent) => {
      switch (e.event) {
        case 'migration-started':
          times.started = eventTimeMs(e);
          return true;
        case 'migration-memory-iteration':
          ctx.progress(`memory iteration ${e.properties?.id ?? '?'} sent`);
          return true;
        case 'paused':
          times.paused = eventTimeMs(e);
          ctx.progress('final phase: the VM is paused here');
          return true;
        case 'migration-finished':
          times.finished = eventTimeMs(e);
          outcome = 'finished';
          vm.migrated();
          return true;
        case 'migration-failed':
          outcome = 'failed';
          return true;
        default:
          // pausing, resuming, resumed (after a failure): the migration's, not the VM's.
          return e.source === 'vm' && ['pausing', 'resuming', 'resumed'].includes(e.event);
      }
    },
  });
  try {
    ctx.progress(`migrating to ${uri}`, 0);
    await chCall(() => vm.client.sendMigration({ destination_url: uri, ...(uri.startsWith('unix:') ? { local: true } : {}) }, { signal: ctx.signal }));
    // The VMM's API has no way to cancel a migration its worker runs: the call waits for the outcome.
    while (outcome === undefined) {
      await sleep(POLL_MS);
      after = (await bytesWritten(pid)) ?? after;
      await vm.sync().catch(() => 0);
      if (outcome === undefined && !vm.live) throw errors.vmmFailure(`the VMM exited while migrating to ${uri} without saying how it ended (see ${vm.paths.log})`);
    }
    if (outcome === 'failed') {
      // The VMM resumes the VM before it takes another request: the events up to that are read.
      await vm.sync().catch(() => 0);
      throw errors.vmmFailure(`the migration to ${uri} failed (migration-failed; the VM runs on here; see ${vm.paths.log})`);
    }
  } finally {
    vm.watchMigration(undefined);
  }
  const vmm = vm.vmm;
  if (!(await vm.exited(SOURCE_EXIT_MS)) && vmm) {
    vm.log.warn({ vmId: vm.vmId, pid: vmm.pid }, 'the VMM did not exit after sending the VM away: SIGKILL');
    killVmm(vmm.pid, vmm.startTicks);
    await vm.exited(5_000);
  }
  ctx.progress('the VM runs at the destination', 100);
  const { started, paused, finished } = times;
  return {
    ...(paused !== undefined && finished !== undefined ? { downtimeMs: Math.max(0, finished - paused) } : {}),
    totalMs: started !== undefined && finished !== undefined ? Math.max(0, finished - started) : Date.now() - wallStart,
    transferredBytes: before !== undefined && after !== undefined ? Math.max(0, after - before) : 0,
  };
}
