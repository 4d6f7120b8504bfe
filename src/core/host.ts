import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { InitializeParams, methodDef, MIGRATION_METHODS, type Progress, type ResultOf, type VmEvent, type VmStatus } from 'hvplug/protocol';
import { ShimHypervisor, type ShimVm, type VmRecordUpdate } from '../shim/shim.js';
import type { Interceptor } from '../shim/interceptors.js';
import { PluginCatalog, type DiscoveryOptions } from './discovery.js';
import {
  AlreadyExistsError,
  HvplugError,
  InvalidStateError,
  MigrationUndecidedError,
  PluginExitedError,
  PluginUnreachableError,
  ProtocolError,
  StateWriteError,
  TimeoutError,
  UnreadableFileError,
  VmNotFoundError,
  VmOwnedError,
} from '../errors/index.js';
import type { ClientOptions, PluginClient } from './plugin-client.js';
import { mergeDefaults, type PluginSpec, type PluginSpecInput } from './plugin-spec.js';
import { defaultRuntimeDir, defaultStateDir, ensurePrivateDir } from './paths.js';
import { PerVmChannel } from './per-vm.js';
import { FileStateStore, valueRecord, type CreatingMethod, type DeletingMethod, type MigrationMark, type RecordError, type StateStore, type VmRecord } from './state-store.js';
import { PluginFailedError, SupervisedPlugin, type SupervisedStatus, type SupervisionOptions } from './supervisor.js';
import { describeOwner, VmLeases } from './ownership.js';
import { defaultLogger } from './default-logger.js';
import { HOST_VERSION } from './version.js';
import { HostTallies, outcomeOf } from './tallies.js';
import type { MetricsListen, MetricsServer } from './metrics-registry.js';
import { monotonicMs } from '../proc/index.js';

export interface PluginHostOptions {
  /** VM records and plugins' persistent files. Default: HVPLUG_STATE_DIR, else the XDG state home. */
  stateDir?: string;
  /** Sockets, pidfiles, consoles. Default: XDG_RUNTIME_DIR/hvplug or a per-user tmp directory. */
  runtimeDir?: string;
  /** Where VM records live; default a FileStateStore in stateDir. */
  store?: StateStore;
  /** Where the host's and the plugins' log lines go; default pino to stderr. */
  logger?: Logger;
  /**
   * Default `warn`: a library stays quiet on its embedder's stderr unless something is wrong. Plugins are
   * told the same level (or the given logger's), so they do not write lines that would be dropped.
   */
  logLevel?: InitializeParams['logLevel'];
  maxMessageBytes?: number;
  /** Plugins given in code; they win over the config file and discovery. */
  plugins?: readonly PluginSpecInput[];
  /** A TOML file with [plugins.<name>] tables. */
  configFile?: string;
  /** Directories searched for hvplug-plugin-<name> executables before PATH. */
  pluginDirs?: readonly string[];
  interceptors?: readonly Interceptor[];
  /** Restart backoff, crash-loop limit, health pings, when an unreachable plugin's VMs are reported lost. */
  supervision?: SupervisionOptions;
  /** The environment plugins' allow-listed variables are taken from (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface HostEvents {
  'plugin-started': [{ plugin: string; pid: number | undefined; restart: number }];
  'plugin-exited': [{ plugin: string; pid: number | undefined; code: number | null; signal: string | null; error: HvplugError }];
  'plugin-unhealthy': [{ plugin: string; pid: number | undefined; reason: string }];
  'plugin-restarted': [{ plugin: string; pid: number | undefined; restart: number }];
  'plugin-failed': [{ plugin: string; error: PluginFailedError }];
  /**
   * A plugin connected to (PluginSpec.connect) is out of reach: its VMs are not lost, calls fail with
   * PluginUnreachableError, and the host reconnects until it is back (`plugin-reconnected`). Once per outage.
   */
  'plugin-unreachable': [{ plugin: string; address: string; reason: string; since: string }];
  /** Back, and its VMs re-attached (each `vm-recovered`, or `vm-lost` if the plugin no longer has it). */
  'plugin-reconnected': [{ plugin: string; address: string; downMs: number; attempts: number }];
  'vm-lost': [{ plugin: string; vmId: string; reason: string }];
  'vm-recovered': [{ plugin: string; vmId: string }];
  /** The plugin deleted the VM (vm/delete answered); its record goes with it. */
  'vm-deleted': [{ plugin: string; vmId: string; name?: string }];
  'record-error': [RecordError];
  /** The plugin broke the protocol and what it sent was dropped (a malformed event, a stale one). */
  'protocol-violation': [{ plugin: string; error: HvplugError }];
}

const LogLevel = InitializeParams.shape.logLevel.def.innerType;
const DEFAULT_LOG_LEVEL = 'warn';
/** First retry of a record write that failed; the delay doubles up to RECORD_RETRY_MAX_MS. */
const RECORD_RETRY_MS = 250;
const RECORD_RETRY_MAX_MS = 10_000;

interface PendingRecord {
  /** The newest record not yet being written, and who waits for it. */
  next: VmRecord | undefined;
  waiters: Waiter[];
  /** Who waits for the write under way. */
  inflight: Waiter[];
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Runtime {
  spec: PluginSpec;
  channel: SupervisedPlugin | PerVmChannel;
  shim: ShimHypervisor;
}

export interface ReattachReport {
  recovered: string[];
  lost: { vmId: string; reason: string }[];
  /** VMs another live host drives: listed, not recovered, never called lost. */
  owned: { vmId: string; owner: string }[];
  /**
   * VMs whose vm/recover got no answer, because the plugin process died first or nothing came by the deadline: kept
   * as recorded (not lost), and re-attached by the restarted or reconnected process.
   */
  unanswered: { vmId: string; reason: string }[];
  /**
   * VMs whose creating call (vm/create, vm/restore) never answered, as their host died during it, and that the
   * plugin could not find: the plugin was asked to clean up (vm/delete) and the record dropped.
   */
  abandoned: { vmId: string; reason: string }[];
  /**
   * VMs whose record was marked deleting: a host asked their plugin to delete them (vm/delete) and died before their
   * record was gone. The plugin was asked again (deleting a VM it no longer has succeeds), and the record and the lease
   * went: the delete the user asked for is finished, never reported lost. One the plugin refuses is in `errors`.
   */
  deleted: string[];
  /** VMs whose record is marked by a live migration that never finished: left alone until resolveMigration. */
  migrating: { vmId: string; role: MigrationMark['role']; peer: string }[];
  errors: RecordError[];
}

export interface MigrateOptions {
  /** The destination's plugin (default: the one of the same name). */
  plugin?: string;
  /** The destination's address as the source reaches it (an IP or name); absent: a unix socket on this machine. */
  address?: string;
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
  /** vm/migrate's deadline (default: the method table's). */
  timeoutMs?: number;
}

/** Where the source sends an incoming VM's stream, and whether the destination takes it in TLS only. */
export interface IncomingTarget {
  uri: string;
  tls: boolean;
}

export interface MigrationReport {
  vmId: string;
  uri: string;
  /** The stream went in TLS, as the destination asked. */
  tls: boolean;
  /** What the source plugin measured: the guest ran nowhere this long. */
  downtimeMs: number | undefined;
  /** The source plugin's vm/migrate, as it measured it. */
  totalMs: number;
  transferredBytes: number;
  /** From the destination's vm/receiveMigration call to the destination's record owning the VM. */
  elapsedMs: number;
}

/**
 * The destination of a live migration as its source drives it: a PluginHost in the same process, the host of a
 * state directory's daemon through its API (RemoteHost), or whatever else carries these calls to a host in another
 * process (the crash tests' host processes relay them, test/fixtures/hosts/migration-host.mjs). PluginHost.migrate
 * is the one place the hand-off's steps and their order are written; a destination only carries out its own three.
 */
export interface MigrationDestination {
  /** How the source's record names this host (VmRecord.migration.peer). */
  readonly identity: string;
  /** Writes the incoming VM's marked record, asks its plugin vm/receiveMigration, answers where to send it. */
  prepareIncoming(vmId: string, plugin: string, config: VmRecord['config'], from: string, address?: string): Promise<IncomingTarget>;
  /** The source says the guest is here: the destination's record loses its mark once the VM runs (the commit point). */
  commitIncoming(vmId: string): Promise<void>;
  /** The source plugin refused: the incoming VM and its record go. */
  abortIncoming(vmId: string): Promise<void>;
}

/** Which host runs the VM after resolveMigration. */
export type MigrationVerdict = 'source' | 'destination';

/** How long the destination may take to report its VM running after the source said it is there. */
const COMMIT_WAIT_MS = 30_000;

/**
 * The embedder's entry point: finds, starts and supervises plugins, hands out a ShimHypervisor per
 * plugin, and keeps a record of every VM so that a crash of a plugin or of the host loses none.
 */
/**
 * The plugin process died, or broke its stream and was killed, or a plugin connected to is out of reach: the call
 * got no answer, only an end, and says nothing of the VM.
 */
function isProcessDeath(err: unknown): err is PluginExitedError | PluginFailedError | ProtocolError | PluginUnreachableError {
  return err instanceof PluginExitedError || err instanceof PluginFailedError || err instanceof ProtocolError || err instanceof PluginUnreachableError;
}

/** A started plugin as `PluginHost.plugins()` shows it. */
export interface PluginStatus extends SupervisedStatus {
  plugin: string;
  /** VMs of this plugin the host knows, and how many of them it reports lost. */
  vms: number;
  lost: number;
}

export class PluginHost extends EventEmitter<HostEvents> implements MigrationDestination {
  readonly stateDir: string;
  readonly runtimeDir: string;
  readonly logger: Logger;
  readonly catalog: PluginCatalog;
  readonly store: StateStore;
  /** Which VMs this host drives; another live host's are left to it. */
  private readonly leases: VmLeases;
  private readonly runtimes = new Map<string, Promise<Runtime>>();
  private readonly interceptors: Interceptor[];
  /** vmId → plugin name, for every VM this host created or re-attached. */
  private readonly created = new Map<string, string>();
  private readonly createdAt = new Map<string, string>();
  /** Ids a vm/create or vm/restore is claiming right now: taken synchronously, so a second one fails at once. */
  private readonly claiming = new Set<string>();
  /** VMs whose creating call has no recorded answer yet (VmRecord.pending), and which call it was. */
  private readonly unanswered = new Map<string, CreatingMethod>();
  /** VMs whose delete was sent and has not removed their record yet (VmRecord.deleting), and which call it was. */
  private readonly deleting = new Map<string, DeletingMethod>();
  /** Delete marks being written (markDeleting): a delete asked again meanwhile is sent once the first one's is on disk. */
  private readonly marking = new Map<string, Promise<void>>();
  /** Where each started plugin was found (PluginSpec.source), written into its VMs' records. */
  private readonly sources = new Map<string, string>();
  /** VMs whose creating call failed because its plugin process died, by plugin: resolved when it is back. */
  private readonly cutShort = new Map<string, string>();
  private closed = false;
  /** Wakes record writes waiting to retry, so that close() does not wait out their backoff. */
  private readonly closing = new AbortController();
  /** Per VM, the newest record not yet written and who waits for it (see persist). */
  private readonly recordWrites = new Map<string, PendingRecord>();
  /** Record writes in flight; close() waits for them so an exiting embedder leaves no stale record. */
  private readonly writes = new Set<Promise<unknown>>();
  /**
   * What metrics() reports, counted always (a few map entries per call, no library). Code of the host's own that
   * does what the host cannot see as a method call reports it here: a live migration, `tallies.migration(...)`.
   */
  readonly tallies = new HostTallies();
  private registry: Promise<Registry> | undefined;
  /** VMs in live migration, and this host's part in it: written into their records (VmRecord.migration). */
  private readonly migrations = new Map<string, MigrationMark>();
  /** Outgoing VMs: what to do once the source plugin answers vm/migrate, before the source record goes. */
  private readonly handoffs = new Map<string, () => Promise<void>>();

  constructor(private readonly opts: PluginHostOptions = {}) {
    super();
    const env = opts.env ?? process.env;
    this.stateDir = opts.stateDir ?? defaultStateDir(env);
    this.runtimeDir = opts.runtimeDir ?? defaultRuntimeDir(env);
    this.store = opts.store ?? new FileStateStore(this.stateDir);
    this.leases = new VmLeases(this.stateDir);
    this.logger = opts.logger ?? defaultLogger(opts.logLevel ?? DEFAULT_LOG_LEVEL);
    const discovery: DiscoveryOptions = {
      specs: opts.plugins,
      configFile: opts.configFile ?? env.HVPLUG_CONFIG,
      pluginDirs: opts.pluginDirs,
      pathEnv: env.PATH,
    };
    this.catalog = new PluginCatalog(discovery);
    this.interceptors = [...(opts.interceptors ?? [])];
  }

  /**
   * A creating call answered and the shim has written what it answered: the record loses its pending mark. One
   * more record write per create, so that the mark never leaves a record before the answer is in it.
   */
  private answered(vmId: string): Promise<undefined> | undefined {
    if (!this.unanswered.delete(vmId)) return undefined;
    return this.answeredRecord(vmId);
  }

  private async answeredRecord(vmId: string): Promise<undefined> {
    const plugin = this.created.get(vmId);
    const vm = await this.vm(vmId);
    if (plugin !== undefined && vm) await this.persist(plugin, { vmId, config: vm.config, state: vm.state, status: vm.status });
    return undefined;
  }

  /** Adds a before/after hook around every method of every plugin started from now on. */
  use(interceptor: Interceptor): this {
    this.interceptors.push(interceptor);
    return this;
  }

  /** The hypervisor behind plugin `name`, starting the plugin on first use. */
  async hypervisor(name: string): Promise<ShimHypervisor> {
    return (await this.runtime(name)).shim;
  }

  /** `source`: where a record says the plugin came from, looked at when the catalog does not know the name. */
  private runtime(name: string, source?: string): Promise<Runtime> {
    if (this.closed) return Promise.reject(new Error('the host is closed'));
    let entry = this.runtimes.get(name);
    if (!entry) {
      entry = this.catalog.resolve(name, source).then((spec) => this.start(spec));
      this.runtimes.set(name, entry);
      entry.catch(() => this.runtimes.delete(name));
    }
    return entry;
  }

  /** The current process of a shared plugin, if started (tests and diagnostics). */
  async client(name: string): Promise<PluginClient | undefined> {
    const rt = await this.runtimes.get(name)?.catch(() => undefined);
    const ch = rt?.channel;
    return ch instanceof SupervisedPlugin ? ch.current() : ch?.shared.current();
  }

  /** The supervised process serving a VM (its own under per-vm isolation). */
  async processOf(vmId: string): Promise<SupervisedPlugin | undefined> {
    const plugin = this.created.get(vmId);
    const rt = plugin ? await this.runtimes.get(plugin)?.catch(() => undefined) : undefined;
    if (!rt) return undefined;
    return rt.channel instanceof PerVmChannel ? await rt.channel.processOf(vmId) : rt.channel;
  }

  /** A VM known to this host by id, across plugins. */
  async vm(vmId: string): Promise<ShimVm | undefined> {
    const plugin = this.created.get(vmId);
    return plugin ? (await this.runtimes.get(plugin))?.shim.vm(vmId) : undefined;
  }

  private clientOptions(spec: PluginSpec, stateDir: string, runtimeDir: string): ClientOptions {
    return {
      stateDir,
      runtimeDir,
      logger: this.logger,
      logLevel: this.opts.logLevel ?? (LogLevel.safeParse(this.logger.level).data ?? DEFAULT_LOG_LEVEL),
      maxMessageBytes: this.opts.maxMessageBytes,
      hostEnv: this.opts.env,
      hostVersion: HOST_VERSION,
    };
  }

  private async start(spec: PluginSpec): Promise<Runtime> {
    const stateDir = await ensurePrivateDir(join(this.stateDir, 'plugins', spec.name), this.stateDir);
    const runtimeDir = await ensurePrivateDir(join(this.runtimeDir, spec.name), this.runtimeDir);
    this.sources.set(spec.name, spec.source);
    const clientOpts = this.clientOptions(spec, stateDir, runtimeDir);
    // The plugin's own setting (its config table) over the host's.
    const supervision: SupervisionOptions = {
      ...this.opts.supervision,
      ...(spec.unreachableLostAfterMs === undefined ? {} : { unreachableLostAfterMs: spec.unreachableLostAfterMs }),
    };
    const rt = {} as Runtime;
    rt.spec = spec;
    if (spec.isolation === 'per-vm') {
      rt.channel = await PerVmChannel.start(spec, clientOpts, supervision, (proc, vmId) => this.supervise(rt, proc, vmId === undefined ? [] : [vmId]));
    } else {
      rt.channel = await SupervisedPlugin.start(spec, clientOpts, supervision, (proc) => this.supervise(rt, proc, undefined));
    }
    rt.shim = new ShimHypervisor(rt.channel, {
      interceptors: this.interceptors,
      withDefaults: (config) => mergeDefaults(spec.defaults, config),
      onVmCreating: async (u, method) => {
        if (methodDef(method).record === 'create') return this.claim(spec.name, u, method);
        // Not written now: the record holds the state being recovered, and what the shim knows before the answer
        // (status created, no state) would replace it; a host dying then would leave a VM nobody can recover.
        // The answer is written when it comes (track).
        this.created.set(u.vmId, spec.name);
      },
      onVmSettled: (vmId) => this.recorded(vmId),
      onVmDeleting: (vmId, method) => this.markDeleting(rt, vmId, method),
      onDeleteFailed: (vmId, err) => this.unmarkDeleting(rt, vmId, err),
      // Awaited ahead of the interceptors' after: the embedder's hooks see a creating call return once its record is final.
      onCreateAnswered: (vmId) => this.answered(vmId),
      // A call whose change cannot be written fails with the reason; writeRecords reports it and retries.
      onVmChange: (u) => this.persist(spec.name, u),
      onVmGone: (vmId, failure, gone) => {
        if (failure !== undefined && isProcessDeath(failure) && this.unanswered.has(vmId)) {
          // The creating call died with its process: what it began (a VMM, a run directory) may be there, and only
          // the plugin can find it. The pending record stays; the restarted process is asked to delete the VM.
          this.cutShort.set(vmId, spec.name);
          return;
        }
        if (gone) return this.dropDeleted(rt, vmId, gone.name);
        return this.dropRecord(vmId);
      },
      onVmHandedOff: async (vmId) => {
        // The destination's record owns the VM before this one goes (PluginHost.migrate); a raw vm/migrate made
        // outside it (the conformance suite's) moved a VM no host of ours receives, and its record just goes.
        const handoff = this.handoffs.get(vmId);
        if (handoff) await handoff();
        await this.dropRecord(vmId);
      },
      onCallEnd: (method, seconds, error) => this.tallies.call(spec.name, method, seconds, error),
      onViolation: (err) => {
        this.tallies.protocolErrors.inc([spec.name]);
        this.logger.warn({ plugin: spec.name, err: err.message }, 'plugin protocol violation');
        this.emit('protocol-violation', { plugin: spec.name, error: err });
      },
    });
    return rt;
  }

  /** Forgets a VM and removes its record and lease: it runs elsewhere now, or its create failed. */
  private dropRecord(vmId: string): Promise<void> {
    return this.removeRecord(vmId).catch((err: Error) => this.logger.error({ vmId, err: err.message }, 'cannot delete VM record'));
  }

  /**
   * Forgets a VM, removes its record, then its lease; throws the store's error if the record stays (and the lease
   * with it: let go, it would hand a recorded VM to another host).
   */
  private async removeRecord(vmId: string): Promise<void> {
    this.created.delete(vmId);
    this.unanswered.delete(vmId);
    this.deleting.delete(vmId);
    this.createdAt.delete(vmId);
    this.migrations.delete(vmId);
    await this.track(this.store.delete(vmId));
    // Only once the record is gone: another host that took the lease while the record was still there would
    // recover the VM, find it gone, and write it back as lost.
    await this.releaseLease(vmId);
  }

  /**
   * vm/delete answered: the record goes, and only then is the VM reported deleted. A record that cannot be removed
   * (a read-only or failing state directory) fails the delete: the plugin has let the VM go, but the record would
   * bring it back at the next re-attach, so the caller must hear of it and delete it again once the directory is
   * writable. Until then the host keeps it as its record has it, lost, and holds its lease.
   */
  private async dropDeleted(rt: Runtime, vmId: string, name: string | undefined): Promise<void> {
    try {
      await this.removeRecord(vmId);
    } catch (err) {
      const reason = (err as Error).message;
      this.logger.error({ vmId, err: reason }, 'cannot remove the record of a deleted VM');
      this.emit('record-error', { where: `record of VM ${vmId}`, message: `cannot remove the record of deleted VM ${vmId}: ${reason}` });
      const record = await this.storedRecord(vmId).catch(() => undefined);
      if (record) {
        this.created.set(vmId, rt.spec.name);
        this.createdAt.set(vmId, record.createdAt);
        // The record keeps its mark: a host that dies before the delete is asked again finishes it at re-attach.
        if (record.deleting !== undefined) this.deleting.set(vmId, record.deleting);
        const vm = rt.shim.adopt(vmId, record.config, 'lost', record.state ?? undefined);
        // Retried until written, as any record write is; the delete again drops it.
        this.persist(rt.spec.name, { vmId, config: vm.config, state: vm.state, status: 'lost' }).catch(() => undefined);
      }
      throw new StateWriteError(
        vmId,
        `VM ${vmId} was deleted by its plugin, but its record could not be removed: ${reason}. It stays known as lost (and ` +
          `leased to this host); once ${this.stateDir} is writable again (free space, remount it read-write), delete it again`,
        { cause: err },
      );
    }
    this.emit('vm-deleted', { plugin: rt.spec.name, vmId, ...(name !== undefined && { name }) });
  }

  /**
   * Before a delete is sent, the VM's record is marked deleting, so that a host that dies before the record is gone
   * leaves the next host a delete to finish (recoverOne), not a record of a VM its plugin has let go, which that host
   * would keep as lost for good. The mark is durable (a record write, fsync'd): a host's SIGKILL must never lose it,
   * and neither may a power loss, as what the plugin deletes (the VM's files, its disks) may be gone for good after
   * one, and a VM would come back lost in place of deleted; the volatile status file could hold it across a SIGKILL
   * only, and holds a status alone. A delete is rare: one fsync more is cheap. A mark that cannot be written fails the
   * delete before anything is sent, as a create's record does.
   */
  private markDeleting(rt: Runtime, vmId: string, method: DeletingMethod): Promise<void> | undefined {
    const vm = rt.shim.vm(vmId);
    // No record of this host's to mark: a raw call for an id it does not know.
    if (!vm || this.created.get(vmId) !== rt.spec.name) return undefined;
    // Marked already (a delete asked again, or one finished at re-attach): sent once the mark is written.
    if (this.deleting.has(vmId)) return this.marking.get(vmId);
    this.deleting.set(vmId, method);
    const update = { vmId, config: vm.config, state: vm.state, status: vm.status };
    const written = this.persist(rt.spec.name, update)
      .catch((err: unknown) => {
        this.deleting.delete(vmId);
        // The write loop retries the newest record: this one, unmarked, lest the mark land later on a VM never deleted.
        this.persist(rt.spec.name, update).catch(() => undefined);
        throw new StateWriteError(
          vmId,
          `VM ${vmId} was not deleted: its record could not be marked for deletion in ${this.stateDir}: ${(err as Error).message}. ` +
            `Nothing was sent to its plugin; free space (or make the directory writable) and delete it again`,
          { cause: err },
        );
      })
      .finally(() => this.marking.delete(vmId));
    this.marking.set(vmId, written);
    return written;
  }

  /**
   * A delete failed. A plugin that answered (a refusal) or is alive still (a deadline, a cancel) keeps the VM as it
   * was: the record loses its mark before the call rejects, so that the VM stays usable and a host dying next does
   * not delete it. A plugin process that died first may have deleted it or not, which only a process of the plugin can
   * tell: the mark stays, and the restarted process (supervise's reattach) or the next host finishes the delete.
   */
  private async unmarkDeleting(rt: Runtime, vmId: string, err: unknown): Promise<void> {
    if (isProcessDeath(err) || !this.deleting.delete(vmId)) return;
    const vm = rt.shim.vm(vmId);
    if (!vm) return;
    await this.persist(rt.spec.name, { vmId, config: vm.config, state: vm.state, status: vm.status }).catch((e: Error) =>
      this.logger.warn({ vmId, err: e.message }, 'cannot clear the delete mark of a VM whose delete failed; retried until written'),
    );
  }

  private releaseLease(vmId: string): Promise<void> {
    return this.leases.release(vmId).catch((err: Error) => this.logger.warn({ vmId, err: err.message }, 'cannot release the VM lease'));
  }

  /** Wires a supervised process's life into host events, and re-attaches its VMs after each restart. */
  private supervise(rt: Runtime, proc: SupervisedPlugin, vmIds: string[] | undefined): void {
    const plugin = rt.spec.name;
    proc.on('started', (e) => this.emit('plugin-started', { plugin, ...e }));
    proc.on('exited', (e) => {
      // Killed for what it wrote on its stream (the supervisor's onExit): a protocol error, beside the dropped messages.
      if (e.error instanceof ProtocolError) this.tallies.protocolErrors.inc([plugin]);
      this.emit('plugin-exited', { plugin, ...e });
    });
    proc.on('unhealthy', (e) => {
      this.tallies.healthMisses.inc([plugin]);
      this.emit('plugin-unhealthy', { plugin, ...e });
    });
    proc.on('restarted', (e) => {
      this.tallies.restarts.inc([plugin]);
      this.emit('plugin-restarted', { plugin, ...e });
    });
    proc.on('failed', (error) => {
      this.logger.error({ plugin, err: error.message }, 'plugin failed');
      this.emit('plugin-failed', { plugin, error });
    });
    proc.on('unreachable', (e) => {
      this.logger.warn({ plugin, at: e.address, reason: e.reason }, 'plugin unreachable; reconnecting');
      this.emit('plugin-unreachable', { plugin, ...e });
    });
    proc.on('reconnected', (e) => {
      this.logger.info({ plugin, at: e.address, downMs: e.downMs, attempts: e.attempts }, 'plugin reconnected');
      this.emit('plugin-reconnected', { plugin, ...e });
    });
    proc.on('unreachable-too-long', (e) => void this.loseUnreachable(rt, e));
    proc.reattach = async () => {
      // A VM whose creating call is still waiting for this process is not one to recover: the call brings it up.
      const vms = (vmIds === undefined ? rt.shim.listVms() : vmIds.map((id) => rt.shim.vm(id)).filter((v): v is ShimVm => !!v)).filter(
        (vm) => !rt.shim.isComingUp(vm.id),
      );
      await Promise.all(vms.map((vm) => this.recoverOne(rt, vm.id, vm.config, vm.state, vm.status)));
      await this.abandonCutShort(rt, vmIds);
    };
  }

  /**
   * A plugin connected to has been out of reach for SupervisionOptions.unreachableLostAfterMs: its VMs are reported
   * lost (event, status, record) as a crash's would be. They are not forgotten: a reconnect re-attaches them.
   */
  private async loseUnreachable(rt: Runtime, e: { address: string; reason: string; downMs: number }): Promise<void> {
    const reason = `plugin ${rt.spec.name} at ${e.address} unreachable for ${Math.round(e.downMs / 1000)} s: ${e.reason}`;
    this.logger.error({ plugin: rt.spec.name, at: e.address, downMs: e.downMs }, 'plugin unreachable too long; its VMs are reported lost');
    await Promise.all(
      rt.shim
        .listVms()
        .filter((vm) => vm.status !== 'lost' && vm.ownedBy === undefined && !rt.shim.isComingUp(vm.id))
        .map(async (vm) => {
          rt.shim.adopt(vm.id, vm.config, 'lost', vm.state);
          this.hostEvent(rt, { vmId: vm.id, type: 'lost', reason });
          this.emit('vm-lost', { plugin: rt.spec.name, vmId: vm.id, reason });
          await this.persist(rt.spec.name, { vmId: vm.id, config: vm.config, state: vm.state, status: 'lost' }).catch(() => undefined);
        }),
    );
  }

  /** The plugins started so far and how they are: running, restarting, unreachable (since when, why), failed. */
  async plugins(): Promise<PluginStatus[]> {
    const out: PluginStatus[] = [];
    for (const [plugin, entry] of this.runtimes) {
      const rt = await entry.catch(() => undefined);
      if (!rt) continue;
      const proc = rt.channel instanceof PerVmChannel ? rt.channel.shared : rt.channel;
      const vms = rt.shim.listVms();
      out.push({ plugin, ...proc.status(), vms: vms.length, lost: vms.filter((v) => v.status === 'lost').length });
    }
    return out;
  }

  /**
   * Writes the record of a new VM, refusing an id that is known here or has a record (an earlier host's VM:
   * its guest may still run, and a re-attach needs its record). Nothing reaches the plugin before this.
   */
  private async claim(plugin: string, u: VmRecordUpdate, pending: CreatingMethod): Promise<void> {
    const owner = this.created.get(u.vmId);
    if (owner !== undefined || this.claiming.has(u.vmId)) {
      throw new AlreadyExistsError(`VM ${u.vmId} already exists${owner ? ` (plugin ${owner})` : ''}`, u.vmId);
    }
    this.claiming.add(u.vmId);
    let leased = false;
    try {
      // The lease before the record: a pending record is on disk only while its creator holds the lease, so a host
      // attaching it meanwhile finds it owned, rather than taking it over and cleaning it up mid-create.
      const lease = await this.leases.acquire(u.vmId);
      if (!lease.ok) {
        if (await this.storedRecord(u.vmId)) throw new AlreadyExistsError(`VM ${u.vmId} already has a record`, u.vmId);
        throw new VmOwnedError(u.vmId, describeOwner(lease.owner));
      }
      leased = true;
      const now = new Date().toISOString();
      const record = this.recordFor(plugin, u, pending, now, now);
      this.unanswered.set(u.vmId, pending);
      if (this.store.create) {
        await this.track(this.store.create(record));
      } else {
        // Atomic only within this host: a custom store without create() cannot fence off another host.
        if ((await this.store.list()).records.some((r) => r.vmId === u.vmId)) {
          throw new AlreadyExistsError(`VM ${u.vmId} already has a record`, u.vmId);
        }
        await this.track(this.store.put(record));
      }
      this.createdAt.set(u.vmId, now);
      this.created.set(u.vmId, plugin);
    } catch (err) {
      this.unanswered.delete(u.vmId);
      if (leased) await this.unclaim(u.vmId, err);
      if (err instanceof HvplugError) throw err;
      throw new StateWriteError(
        u.vmId,
        `VM ${u.vmId} was not created: its lease or record could not be written in ${this.stateDir}: ${(err as Error).message}. ` +
          `Nothing was sent to its plugin; free space (or make the directory writable) and create it again`,
        { cause: err },
      );
    } finally {
      this.claiming.delete(u.vmId);
    }
  }

  /** A claim that failed after its lease was taken: the record, if it may be ours, goes, and then the lease. */
  private async unclaim(vmId: string, err: unknown): Promise<void> {
    // AlreadyExists: the record there is another VM's. Any other failure may come after ours was linked into place
    // (its directory's fsync, say), and a pending record left behind would hold the id until a re-attach.
    if (!(err instanceof AlreadyExistsError)) {
      try {
        await this.track(this.store.delete(vmId));
      } catch (e) {
        // The lease stays with the record it may guard; the next re-attach resolves the pending record.
        this.logger.error({ vmId, err: (e as Error).message }, 'cannot remove the record of a failed create');
        return;
      }
    }
    await this.releaseLease(vmId);
  }

  /** A VM's record as this host writes it: the update, where its plugin came from, its pending call, delete and migration marks. */
  private recordFor(plugin: string, u: VmRecordUpdate, pending: CreatingMethod | undefined, createdAt: string, updatedAt: string): VmRecord {
    const migration = this.migrations.get(u.vmId);
    const deleting = this.deleting.get(u.vmId);
    const source = this.sources.get(plugin);
    // A value record (the shim replaces a VM's config and state, never edits them): the store compares it by identity.
    // Without spreads in the common case: V8 builds a literal with a spread before more members by a slow path.
    if (pending === undefined && migration === undefined && deleting === undefined) {
      return valueRecord({ vmId: u.vmId, plugin, source, config: u.config, state: u.state, status: u.status, createdAt, updatedAt });
    }
    return valueRecord({
      vmId: u.vmId,
      plugin,
      source,
      config: u.config,
      state: u.state,
      status: u.status,
      ...(pending === undefined ? {} : { pending }),
      ...(deleting === undefined ? {} : { deleting }),
      ...(migration === undefined ? {} : { migration }),
      createdAt,
      updatedAt,
    });
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.writes.add(p);
    void p.finally(() => this.writes.delete(p)).catch(() => undefined);
    return p;
  }

  /**
   * Writes a VM's record; resolves once a write holding this update (or a newer one) is done. However fast the
   * updates come (a plugin's events), a VM has one write in flight and one newest record waiting: the rest are
   * skipped, and what waits for them is one callback each until the next write.
   */
  private persist(plugin: string, u: VmRecordUpdate): Promise<void> {
    const now = new Date().toISOString();
    const createdAt = this.createdAt.get(u.vmId) ?? now;
    this.createdAt.set(u.vmId, createdAt);
    const record = this.recordFor(plugin, u, this.unanswered.get(u.vmId), createdAt, now);
    let pending = this.recordWrites.get(u.vmId);
    const written = new Promise<void>((resolve, reject) => {
      if (pending) {
        pending.next = record;
        pending.waiters.push({ resolve, reject });
        return;
      }
      pending = { next: record, waiters: [{ resolve, reject }], inflight: [] };
      this.recordWrites.set(u.vmId, pending);
      // Started once what was read with this update has been handled: a plugin's status event, its state event and
      // the call's answer often come in one read, and then make one write instead of two. (A write that changes the
      // status alone is the store's volatile status file, not an fsync'd record: FileStateStore.)
      const p = pending;
      void this.track(new Promise<void>((r) => setImmediate(r)).then(() => this.writeRecords(u.vmId, p)));
    });
    return written;
  }

  /** Resolves once what has been handed to persist for the VM is written; undefined when nothing is pending. */
  private recorded(vmId: string): Promise<void> | undefined {
    const pending = this.recordWrites.get(vmId);
    if (!pending) return undefined;
    return new Promise<void>((resolve, reject) => {
      if (pending.next) pending.waiters.push({ resolve, reject });
      else pending.inflight.push({ resolve, reject });
    });
  }

  /**
   * The write loop of one VM's record. A write that fails (a full disk) fails whoever waited for it, is reported
   * (`record-error`), and the newest record is tried again, RECORD_RETRY_MS doubling up to RECORD_RETRY_MAX_MS
   * apart, until it is written, the VM is deleted, or the host closes.
   */
  private async writeRecords(vmId: string, pending: PendingRecord): Promise<void> {
    let retryMs = RECORD_RETRY_MS;
    try {
      while (pending.next) {
        const record = pending.next;
        const waiters = pending.waiters;
        pending.next = undefined;
        pending.waiters = [];
        pending.inflight = waiters;
        if (!this.created.has(vmId)) {
          // Deleted meanwhile (an event of the vm/delete itself, written behind the delete): a write now would
          // bring the record back.
          for (const w of waiters) w.resolve();
          break;
        }
        try {
          await this.store.put(record);
          retryMs = RECORD_RETRY_MS;
          for (const w of waiters) w.resolve();
        } catch (err) {
          const message = `cannot write the record of VM ${vmId}: ${(err as Error).message}`;
          this.logger.error({ vmId, err: (err as Error).message }, 'cannot persist VM record; will retry');
          this.emit('record-error', { where: `record of VM ${vmId}`, message });
          for (const w of waiters) w.reject(err as Error);
          if (this.closed || !this.created.has(vmId)) break;
          // The newest record is tried again: a newer one if it came meanwhile, else this one.
          pending.next ??= record;
          // Unref'd: a retry keeps no process alive; close() wakes it for one last try.
          await sleep(retryMs, undefined, { ref: false, signal: this.closing.signal }).catch(() => undefined);
          retryMs = Math.min(retryMs * 2, RECORD_RETRY_MAX_MS);
        }
      }
    } finally {
      this.recordWrites.delete(vmId);
    }
  }

  /**
   * vm/recover for one VM; a VM that cannot be re-attached is reported lost (event, status, record), not forgotten.
   * `reread`: the record was read before the lease was taken (attach, reattach), and is read again once it is.
   */
  private async recoverOne(
    rt: Runtime,
    vmId: string,
    config: VmRecord['config'],
    state: VmRecord['state'],
    status: VmRecord['status'],
    reread = false,
  ): Promise<boolean | 'owned' | 'gone' | { unanswered: string } | { abandoned: string } | { deleted: true } | { kept: string }> {
    this.created.set(vmId, rt.spec.name);
    const lease = await this.leases.acquire(vmId);
    if (!lease.ok) {
      // Seen, as its record says, and left alone: recovering it would take it from its live owner.
      rt.shim.adopt(vmId, config, status, state ?? undefined).ownedBy = describeOwner(lease.owner);
      return 'owned';
    }
    if (reread) {
      // Its owner may have deleted it (or finished creating it) between our read and our lease: an owner lets go
      // of the lease only once the record is gone, so what is on disk now is what there is.
      const now = await this.storedRecord(vmId);
      if (!now) {
        this.created.delete(vmId);
        this.createdAt.delete(vmId);
        this.unanswered.delete(vmId);
        this.deleting.delete(vmId);
        rt.shim.forget(vmId);
        await this.releaseLease(vmId);
        return 'gone';
      }
      ({ config, state, status } = now);
      this.createdAt.set(vmId, now.createdAt);
      if (now.pending) this.unanswered.set(vmId, now.pending);
      else this.unanswered.delete(vmId);
      if (now.deleting) this.deleting.set(vmId, now.deleting);
      else this.deleting.delete(vmId);
    }
    const seen = rt.shim.vm(vmId);
    if (seen) seen.ownedBy = undefined;
    let reason: string | undefined;
    try {
      // A VM being deleted is recovered first all the same: a plugin that finds its VMM by the state (a pid) then
      // has it to end.
      const vm = await rt.shim.recoverVm({ vmId, config, state: state ?? null });
      if (this.deleting.has(vmId)) return this.finishDelete(rt, vmId, config, state);
      if (vm.status !== 'lost') {
        // Found after all: its creating call's answer is no longer needed to know it.
        if (this.unanswered.delete(vmId)) await this.persist(rt.spec.name, { vmId, config: vm.config, state: vm.state, status: vm.status });
        this.hostEvent(rt, { vmId, type: 'recovered' });
        this.emit('vm-recovered', { plugin: rt.spec.name, vmId });
        return true;
      }
      reason = 'the VMM is gone';
    } catch (err) {
      if (isProcessDeath(err) || err instanceof TimeoutError) {
        // No verdict on the VM: the process died (or broke its stream, for which it is killed) before it answered, the
        // request could not even be sent to it, or no answer came by the deadline (a stuck plugin, a peer gone silent
        // on the network, while the VMM runs on). Calling the VM lost would write that into its record for good; it
        // stays as recorded, and the restarted or reconnected process re-attaches it (supervise's reattach).
        if (!rt.shim.vm(vmId)) rt.shim.adopt(vmId, config, status, state ?? undefined);
        return { unanswered: err.message };
      }
      reason = (err as Error).message;
    }
    if (this.deleting.has(vmId)) return this.finishDelete(rt, vmId, config, state);
    if (this.unanswered.has(vmId)) return this.abandon(rt, vmId, config, state, reason);
    const vm = rt.shim.adopt(vmId, config, 'lost', state ?? undefined);
    this.hostEvent(rt, { vmId, type: 'lost', reason });
    await this.persist(rt.spec.name, { vmId, config: vm.config, state: vm.state, status: 'lost' });
    this.emit('vm-lost', { plugin: rt.spec.name, vmId, reason });
    return false;
  }

  /** The VMs whose creating call died with this plugin's previous process: deleted through the new one. */
  private async abandonCutShort(rt: Runtime, vmIds: readonly string[] | undefined): Promise<void> {
    const ours = [...this.cutShort].filter(([vmId, plugin]) => plugin === rt.spec.name && (vmIds === undefined || vmIds.includes(vmId)));
    if (ours.length === 0) return;
    const { records } = await this.store.list();
    for (const [vmId] of ours) {
      this.cutShort.delete(vmId);
      const r = records.find((x) => x.vmId === vmId);
      if (r) await this.abandon(rt, vmId, r.config, r.state, 'its plugin process died during the call');
    }
  }

  /**
   * A VM whose creating call never answered (its host died during it) and that the plugin cannot find: nobody
   * ever learnt it existed, so it is not reported lost (a lost record stays until someone deletes it). The plugin
   * is asked to delete it by id, so that whatever the call had begun (a run directory, a VMM process it can find
   * by the id) goes too, and the record is dropped. If the plugin cannot answer, the record stays as it is and the
   * next re-attach tries again.
   */
  private async abandon(
    rt: Runtime,
    vmId: string,
    config: VmRecord['config'],
    state: VmRecord['state'],
    reason: string,
  ): Promise<{ abandoned: string } | { unanswered: string }> {
    const call = this.unanswered.get(vmId) ?? 'creating call';
    const vm = rt.shim.adopt(vmId, config, 'lost', state ?? undefined);
    try {
      // Its answer forgets the VM: onVmGone drops the record, the mark and the lease.
      await vm.delete();
    } catch (err) {
      this.logger.warn({ vmId, err: (err as Error).message }, 'cannot clean up a VM whose create never answered; kept for the next re-attach');
      return { unanswered: (err as Error).message };
    }
    this.logger.info({ vmId, reason }, 'dropped the record of a VM whose create never answered');
    return { abandoned: `its ${call} never answered and the plugin cannot find it: ${reason}` };
  }

  /**
   * A VM whose record is marked deleting: its delete was sent and the host (or the plugin process) died before the
   * record was gone. The user asked for it to go, so it is not reported lost: the plugin is asked to delete it again
   * (deleting a VM it no longer has succeeds), and the answer drops the record, then the lease (onVmGone). A plugin
   * that refuses, or does not answer by the deadline, keeps the VM, which then loses the mark (unmarkDeleting) and is
   * the caller's to see; one whose process dies first leaves all as it is for the next re-attach.
   */
  private async finishDelete(
    rt: Runtime,
    vmId: string,
    config: VmRecord['config'],
    state: VmRecord['state'],
  ): Promise<{ deleted: true } | { unanswered: string } | { kept: string }> {
    const vm = rt.shim.vm(vmId) ?? rt.shim.adopt(vmId, config, 'lost', state ?? undefined);
    try {
      await vm.delete();
    } catch (err) {
      if (isProcessDeath(err)) return { unanswered: err.message };
      this.logger.warn({ vmId, err: (err as Error).message }, 'the plugin did not finish the delete of a VM; kept');
      return { kept: (err as Error).message };
    }
    this.logger.info({ vmId }, 'finished a delete cut short by the death of its host or plugin process');
    return { deleted: true };
  }

  private hostEvent(rt: Runtime, e: { vmId: string; type: 'recovered' } | { vmId: string; type: 'lost'; reason: string }): void {
    rt.shim.deliver({ ...e, seq: 0, time: new Date().toISOString() } as VmEvent);
  }

  /** The VM records in the store (what `hvplug ps` lists). */
  async records(): Promise<{ records: VmRecord[]; errors: RecordError[] }> {
    return this.store.list();
  }

  /** The record records() has for `vmId`, when the store can tell it alone (StateStore.get); undefined otherwise. */
  async record(vmId: string): Promise<VmRecord | undefined> {
    return this.store.get?.(vmId);
  }

  /**
   * A VM by id: known already, or re-attached from its record. Undefined when there is no record. A VM whose record
   * is marked by a live migration this host is not carrying out (a host died during it) is not re-attached, as
   * reattach() does not: it is handed back seen, owned by that migration, until resolveMigration settles it.
   */
  async attach(vmId: string): Promise<ShimVm | undefined> {
    const known = await this.vm(vmId);
    // One seen as another host's is asked about again: its owner may have let go since (a daemon outlives the
    // commands and embedders it watched). One of this host's migrations is this host's own.
    if (known && (known.ownedBy === undefined || this.migrations.has(vmId))) return known;
    const record = await this.recordOf(vmId);
    if (!record) return known;
    const rt = await this.runtime(record.plugin, record.source);
    if (record.migration) {
      const seen = rt.shim.vm(vmId) ?? rt.shim.adopt(vmId, record.config, record.status, record.state ?? undefined);
      seen.ownedBy = `an undecided live migration (${record.migration.role}, peer ${record.migration.peer}; see resolveMigration)`;
      return seen;
    }
    this.createdAt.set(vmId, record.createdAt);
    if (record.pending) this.unanswered.set(vmId, record.pending);
    await this.recoverOne(rt, record.vmId, record.config, record.state, record.status, true);
    return rt.shim.vm(vmId);
  }

  /**
   * Re-attaches every VM in the state store (after a host restart): each plugin is started and asked to
   * vm/recover its VMs. Unreadable records are reported, never dropped.
   */
  async reattach(): Promise<ReattachReport> {
    const { records, errors } = await this.store.list();
    for (const r of records) {
      this.createdAt.set(r.vmId, r.createdAt);
      if (r.pending && !this.created.has(r.vmId)) this.unanswered.set(r.vmId, r.pending);
    }
    for (const e of errors) this.emit('record-error', e);
    const report: ReattachReport = { recovered: [], lost: [], owned: [], unanswered: [], abandoned: [], deleted: [], migrating: [], errors };
    await Promise.all(
      records.map(async (r) => {
        if (this.created.has(r.vmId)) return;
        if (r.migration) {
          // Which side runs it only both hosts can tell (resolveMigration): re-attaching it here could run it twice.
          report.migrating.push({ vmId: r.vmId, role: r.migration.role, peer: r.migration.peer });
          return;
        }
        let rt: Runtime;
        try {
          rt = await this.runtime(r.plugin, r.source);
        } catch (err) {
          // Out of reach is not gone: the record stays as it is, and a later attach or hypervisor() tries again.
          if (err instanceof PluginUnreachableError) report.unanswered.push({ vmId: r.vmId, reason: err.message });
          else report.lost.push({ vmId: r.vmId, reason: `plugin ${r.plugin}: ${(err as Error).message}` });
          return;
        }
        let outcome: Awaited<ReturnType<PluginHost['recoverOne']>>;
        try {
          outcome = await this.recoverOne(rt, r.vmId, r.config, r.state, r.status, true);
        } catch (err) {
          // A lease or record of this VM that cannot be read (a FIFO in its place, a failing disk) is this VM's error,
          // reported with the others; the rest are re-attached. The VM is left to whoever can read its lease.
          if (!rt.shim.vm(r.vmId)) this.created.delete(r.vmId);
          const where = err instanceof UnreadableFileError ? err.file : `VM ${r.vmId}`;
          const e = { where, message: `cannot re-attach VM ${r.vmId}: ${(err as Error).message}` };
          report.errors.push(e);
          this.emit('record-error', e);
          return;
        }
        // Deleted by its owner since it was listed: nothing to report.
        if (outcome === 'gone') return;
        if (outcome === 'owned') report.owned.push({ vmId: r.vmId, owner: rt.shim.vm(r.vmId)?.ownedBy ?? 'another host' });
        else if (typeof outcome === 'object' && 'abandoned' in outcome) report.abandoned.push({ vmId: r.vmId, reason: outcome.abandoned });
        else if (typeof outcome === 'object' && 'deleted' in outcome) report.deleted.push(r.vmId);
        // Kept, with the status its vm/recover gave, unmarked: the VM is the caller's to see, and to delete again.
        else if (typeof outcome === 'object' && 'kept' in outcome) {
          // The plugin's error says why: a refusal, or a deadline (a timeout is no refusal, and is not called one).
          const e = { where: `VM ${r.vmId}`, message: `cannot finish the delete of VM ${r.vmId}: ${outcome.kept}` };
          report.errors.push(e);
          this.emit('record-error', e);
        }
        else if (typeof outcome === 'object') report.unanswered.push({ vmId: r.vmId, reason: outcome.unanswered });
        else if (outcome) report.recovered.push(r.vmId);
        else report.lost.push({ vmId: r.vmId, reason: rt.shim.vm(r.vmId)?.status ?? 'lost' });
      }),
    );
    return report;
  }

  /** The VMs this host knows now, counted by plugin and status (the metrics' `hvplug_vms`). */
  async vmCounts(): Promise<{ plugin: string; status: VmStatus; count: number }[]> {
    const out: { plugin: string; status: VmStatus; count: number }[] = [];
    for (const [plugin, entry] of this.runtimes) {
      const rt = await entry.catch(() => undefined);
      if (!rt) continue;
      const byStatus = new Map<VmStatus, number>();
      for (const vm of rt.shim.listVms()) byStatus.set(vm.status, (byStatus.get(vm.status) ?? 0) + 1);
      for (const [status, count] of byStatus) out.push({ plugin, status, count });
    }
    return out;
  }

  /**
   * A Prometheus registry (prom-client) of this host's calls, plugin restarts, health misses, protocol errors, VMs and
   * migrations (the README's Metrics section names each). prom-client is loaded by the first call, not by importing
   * hvplug; the counts go back to the host's start. The same registry every time.
   */
  metrics(): Promise<Registry> {
    this.registry ??= import('./metrics-registry.js').then((m) => m.hostRegistry(this));
    return this.registry;
  }

  /** Serves metrics() over HTTP at http://<host>:<port>/metrics for a scraper; close() it when done. */
  async serveMetrics(listen: MetricsListen): Promise<MetricsServer> {
    const [registry, m] = await Promise.all([this.metrics(), import('./metrics-registry.js')]);
    return m.serveRegistry(registry, listen);
  }

  // ---- live migration (docs/migration.md) ----

  /**
   * A host of another state directory with this host's plugins (specs, config file, plugin directories), settings,
   * logger and hooks: a migration's destination on this machine that no daemon serves. Nothing starts until used.
   */
  peer(dirs: { stateDir: string; runtimeDir: string }): PluginHost {
    const { store: _own, ...opts } = this.opts;
    return new PluginHost({ ...opts, ...dirs, logger: this.logger });
  }

  /** How the other side of a migration names this host in its record: hostname and state directory. */
  get identity(): string {
    return `${hostname()}:${this.stateDir}`;
  }

  /**
   * Moves a running VM to another host's plugin, live. The record moves with it: the destination's is written
   * (marked incoming) before anything is sent, the source's is marked outgoing; once the source plugin says the
   * guest runs there, the destination's record loses its mark (from then on it owns the VM) and only then is the
   * source's removed. A refusal of either plugin leaves the VM running here and no record there. An answer that
   * never comes leaves both marks, and MigrationUndecidedError: resolveMigration settles it.
   */
  async migrate(vmId: string, destination: MigrationDestination, opts: MigrateOptions = {}): Promise<MigrationReport> {
    const plugin = this.created.get(vmId);
    try {
      const report = await this.migrateOut(vmId, destination, opts);
      if (plugin !== undefined) this.tallies.migration(plugin, 'ok', report.downtimeMs === undefined ? undefined : report.downtimeMs / 1000);
      return report;
    } catch (err) {
      if (plugin !== undefined) this.tallies.migration(plugin, outcomeOf(err));
      throw err;
    }
  }

  private async migrateOut(vmId: string, destination: MigrationDestination, opts: MigrateOptions): Promise<MigrationReport> {
    // The same state directory through its daemon is this host too.
    if (destination === this || destination.identity === this.identity) throw new InvalidStateError(`VM ${vmId} cannot migrate to the host that runs it`, vmId, 'running', []);
    const vm = await this.vm(vmId);
    const plugin = this.created.get(vmId);
    if (!vm || plugin === undefined) throw new VmNotFoundError(vmId);
    if (vm.ownedBy !== undefined) throw new VmOwnedError(vmId, vm.ownedBy);
    if (this.migrations.has(vmId)) throw new InvalidStateError(`VM ${vmId} is migrating already`, vmId, vm.status, []);
    const began = monotonicMs();
    this.migrations.set(vmId, { role: 'outgoing', peer: destination.identity, since: new Date().toISOString() });
    await this.persist(plugin, { vmId, config: vm.config, state: vm.state, status: vm.status });
    let target: IncomingTarget;
    try {
      target = await destination.prepareIncoming(vmId, opts.plugin ?? plugin, vm.config, this.identity, opts.address);
    } catch (err) {
      await this.unmark(vmId);
      throw err;
    }
    // Set once the source plugin has answered vm/migrate: the guest has left it, and only the destination can tell
    // where it runs now. A commit that fails after that is undecided, never a refusal to roll back: rolling back
    // would delete the only running copy (abortIncoming) and tell the caller the VM stayed here.
    let sent = false;
    this.handoffs.set(vmId, () => {
      sent = true;
      return destination.commitIncoming(vmId);
    });
    let result: ResultOf<(typeof MIGRATION_METHODS)['send']>;
    try {
      result = await vm.migrate({ uri: target.uri, ...(target.tls ? { tls: true } : {}) }, { onProgress: opts.onProgress, signal: opts.signal, timeoutMs: opts.timeoutMs });
    } catch (err) {
      if (sent) {
        throw new MigrationUndecidedError(vmId, `the source plugin sent it, but the destination did not confirm it: ${(err as Error).message}`, { cause: err });
      }
      if (err instanceof TimeoutError || err instanceof PluginUnreachableError || isProcessDeath(err)) {
        throw new MigrationUndecidedError(vmId, `the source plugin did not answer vm/migrate: ${(err as Error).message}`, { cause: err });
      }
      // The plugin answered with a refusal (or a cancellation it rolled back): the guest runs here still.
      await destination.abortIncoming(vmId).catch((e: Error) => this.logger.warn({ vmId, err: e.message }, 'cannot remove the incoming VM of a failed migration'));
      await this.unmark(vmId);
      throw err;
    } finally {
      this.handoffs.delete(vmId);
    }
    return {
      vmId,
      uri: target.uri,
      tls: target.tls,
      downtimeMs: result.downtimeMs,
      totalMs: result.totalMs,
      transferredBytes: result.transferredBytes,
      elapsedMs: monotonicMs() - began,
    };
  }

  /** Clears the VM's migration mark (the migration did not happen) and writes its record so. */
  private async unmark(vmId: string): Promise<void> {
    this.migrations.delete(vmId);
    const vm = await this.vm(vmId);
    const plugin = this.created.get(vmId);
    if (vm && plugin !== undefined) await this.persist(plugin, { vmId, config: vm.config, state: vm.state, status: vm.status });
  }

  /**
   * Migration, destination side: the record of an incoming VM (marked so, before the plugin hears of it), the
   * plugin's vm/receiveMigration, and the uri the source sends to. The VM takes no call until commitIncoming.
   */
  async prepareIncoming(vmId: string, plugin: string, config: VmRecord['config'], from: string, address?: string): Promise<IncomingTarget> {
    const hv = await this.hypervisor(plugin);
    this.migrations.set(vmId, { role: 'incoming', peer: from, since: new Date().toISOString() });
    try {
      const { vm, answer } = await hv.bringUpWith(MIGRATION_METHODS.receive, { vmId, config, ...(address === undefined ? {} : { address }) });
      vm.ownedBy = `an incoming migration from ${from}`;
      return { uri: answer.uri, tls: answer.tls === true };
    } catch (err) {
      this.migrations.delete(vmId);
      throw err;
    }
  }

  /** The source says the guest is here: once the plugin reports it running, this record owns the VM (the commit point). */
  async commitIncoming(vmId: string): Promise<void> {
    const vm = await this.vm(vmId);
    const plugin = this.created.get(vmId);
    if (!vm || plugin === undefined) throw new VmNotFoundError(vmId, `no incoming VM ${vmId} on ${this.identity}`);
    vm.ownedBy = undefined;
    const deadline = Date.now() + COMMIT_WAIT_MS;
    // The destination's VMM may learn the stream is complete a moment after the source does.
    while (vm.status !== 'running') {
      const info = await vm.info();
      if (info.status === 'running') break;
      if (info.status !== 'created' && info.status !== 'paused') throw new InvalidStateError(`the incoming VM ${vmId} is ${info.status}, not running`, vmId, info.status, ['running']);
      if (Date.now() > deadline) throw new InvalidStateError(`the incoming VM ${vmId} is not running ${COMMIT_WAIT_MS} ms after its source sent it`, vmId, info.status, ['running']);
      await sleep(20);
    }
    this.migrations.delete(vmId);
    await this.persist(plugin, { vmId, config: vm.config, state: vm.state, status: 'running' });
  }

  /** The migration failed at the source: the incoming VM and its record go. */
  async abortIncoming(vmId: string): Promise<void> {
    const vm = await this.vm(vmId);
    if (!vm) return;
    vm.ownedBy = undefined;
    await vm.delete();
  }

  /**
   * Settles a migration left undecided (MigrationUndecidedError, or a host that died during it: its reattach
   * reports the VM under `migrating`). Either host may call it with the other. The rule (docs/migration.md): a
   * destination record without its mark owns the VM; else a source record without its mark keeps it (it took the VM
   * back); else a destination plugin that runs the VM makes it the owner; else the source does, and the incoming VM
   * is deleted. The losing side's plugin is asked to delete its VM, so that nothing of it runs twice.
   */
  async resolveMigration(vmId: string, peer: PluginHost): Promise<MigrationVerdict> {
    const mine = await this.recordOf(vmId);
    const source = mine?.migration?.role === 'incoming' ? peer : mine?.migration?.role === 'outgoing' ? this : undefined;
    if (!source) {
      const theirs = await peer.recordOf(vmId);
      if (!theirs?.migration) throw new InvalidStateError(`VM ${vmId} has no migration to resolve on either host`, vmId, mine?.status ?? 'lost', []);
      return peer.resolveMigration(vmId, this);
    }
    const destination = source === this ? peer : this;
    const [src, dst] = await Promise.all([source.recordOf(vmId), destination.recordOf(vmId)]);
    let verdict: MigrationVerdict = 'source';
    if (dst && !dst.migration) verdict = 'destination';
    // A source record that lost its mark took the VM back (its plugin failed vm/migrate and the destination could not
    // be told): it may have run on since, so whatever the destination's plugin runs of it is a stale copy.
    else if (dst && src && !src.migration) verdict = 'source';
    else if (dst) verdict = (await destination.probeIncoming(dst)) ? 'destination' : 'source';
    if (verdict === 'destination') {
      await source.dropMigrated(vmId);
      return 'destination';
    }
    if (dst) await destination.dropMigrated(vmId);
    source.migrations.delete(vmId);
    if (src) {
      await source.track(source.store.put({ ...src, migration: undefined, updatedAt: new Date().toISOString() }));
      const vm = await source.attach(vmId);
      // vm/migrate stops the guest for its last phase (the example plugin's SIGSTOP, QEMU's stop-and-copy) without
      // reporting a pause; a source plugin that died then leaves it stopped. It was running when marked: it runs on.
      if (src.status === 'running' && vm?.status === 'paused') await vm.resume();
    }
    return 'source';
  }

  private async recordOf(vmId: string): Promise<VmRecord | undefined> {
    return (await this.store.list()).records.find((r) => r.vmId === vmId);
  }

  /** The VM's record as the store has it now: get() when it can tell, else list(). */
  private async storedRecord(vmId: string): Promise<VmRecord | undefined> {
    return (await this.store.get?.(vmId)) ?? this.recordOf(vmId);
  }

  /** An incoming VM of an undecided migration: if its plugin runs it, its record takes the VM (true). */
  private async probeIncoming(r: VmRecord): Promise<boolean> {
    const rt = await this.runtime(r.plugin, r.source);
    this.created.set(r.vmId, r.plugin);
    this.createdAt.set(r.vmId, r.createdAt);
    const lease = await this.leases.acquire(r.vmId);
    if (!lease.ok) throw new VmOwnedError(r.vmId, describeOwner(lease.owner));
    this.migrations.set(r.vmId, r.migration ?? { role: 'incoming', peer: 'unknown', since: r.createdAt });
    const vm = await rt.shim.recoverVm({ vmId: r.vmId, config: r.config, state: r.state ?? null }).catch(() => undefined);
    if (vm?.status !== 'running') return false;
    this.migrations.delete(r.vmId);
    this.unanswered.delete(r.vmId);
    await this.persist(r.plugin, { vmId: r.vmId, config: vm.config, state: vm.state, status: vm.status });
    return true;
  }

  /** The losing side of a migration: its plugin deletes whatever of the VM it has, and the record goes. */
  private async dropMigrated(vmId: string): Promise<void> {
    const r = await this.recordOf(vmId);
    if (!r) return;
    const rt = await this.runtime(r.plugin, r.source);
    this.created.set(vmId, r.plugin);
    const vm = rt.shim.vm(vmId) ?? rt.shim.adopt(vmId, r.config, 'lost', r.state ?? undefined);
    vm.ownedBy = undefined;
    // Its answer forgets the VM: onVmGone drops the record, the mark and the lease.
    await vm.delete();
  }

  /** Shuts every plugin down (graceful, then forced). VMs keep running unless stopped first. */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    const entries = [...this.runtimes.values()];
    this.runtimes.clear();
    await Promise.all(
      entries.map(async (e) => {
        const rt = await e.catch(() => undefined);
        if (!rt) return;
        rt.shim.dispose();
        await rt.channel.close();
      }),
    );
    await Promise.allSettled([...this.writes]);
    // Last: another host may take the VMs over once their records are final.
    await this.leases.releaseAll().catch((err: Error) => this.logger.warn({ err: err.message }, 'cannot release VM leases'));
  }
}
