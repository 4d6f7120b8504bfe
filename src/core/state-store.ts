import { randomBytes } from 'node:crypto';
import { link, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod';
import { formatIssues, Id, METHOD_NAMES, methodDef, PluginState, toIssues, VmConfig, VmStatus } from 'hvplug/protocol';
import { AlreadyExistsError } from '../errors/index.js';
import { NameClaims } from './name-claims.js';
import { ensurePrivateDir } from './paths.js';

/** What the host keeps per VM so that nothing is lost when the plugin or the host dies. */
/** The methods that bring a VM into existence with a record (the table's `record: 'create'`). */
const CREATING = METHOD_NAMES.filter((m) => methodDef(m).record === 'create');
export const CreatingMethod = z.string().refine((m) => CREATING.includes(m as (typeof CREATING)[number]), {
  message: `one of ${CREATING.join(', ')}`,
});
export type CreatingMethod = z.infer<typeof CreatingMethod>;

/**
 * A VM in live migration (PluginHost.migrate). The destination's record is written `incoming` before the source
 * sends, the source's is marked `outgoing` before that; the owner is the destination once its record has no mark,
 * the source until then. See docs/migration.md.
 */
export const MigrationMark = z.object({
  role: z.enum(['incoming', 'outgoing']),
  /** The other host (PluginHost.identity): hostname and state directory. */
  peer: z.string().max(4096),
  since: z.string(),
});
export type MigrationMark = z.output<typeof MigrationMark>;

export const VmRecord = z.object({
  vmId: Id,
  plugin: z.string(),
  /**
   * Where the plugin was found when the VM was last written (PluginSpec.source: a config file, a plugin
   * directory, `builtin` or `api`): a later host that does not know the name looks there.
   */
  source: z.string().optional(),
  config: VmConfig,
  /** The plugin's opaque state, handed back at vm/recover. */
  state: PluginState.optional(),
  status: VmStatus,
  /**
   * The call that brought the VM up (vm/create, vm/restore) was sent and its answer is not recorded yet: the
   * record is written before the call, so that no VM exists without one. A host that finds it so at re-attach
   * resolves it (PluginHost.recoverOne): the VM is recovered if the plugin finds it, else cleaned up and dropped.
   */
  /** The creating call (the table's `record: 'create'` methods) whose answer this record does not hold yet. */
  pending: CreatingMethod.optional(),
  migration: MigrationMark.optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type VmRecord = z.output<typeof VmRecord>;

export interface RecordError {
  /** Where the bad record is (a file path for the file store). */
  where: string;
  message: string;
}

/** Pluggable persistence (the Kata library API asked for it): bring your own, or use FileStateStore. */
export interface StateStore {
  put(record: VmRecord): Promise<void>;
  /**
   * Writes the record of a new VM, or throws AlreadyExistsError when its vmId has one, or when its name (if any)
   * is another record's: the check and the write are one step, so two hosts on one store cannot both claim an id
   * or a name. Stores without it get a list-then-put.
   */
  create?(record: VmRecord): Promise<void>;
  delete(vmId: string): Promise<void>;
  /** Every readable record, and a report of every unreadable one: a bad record never hides the rest. */
  list(): Promise<{ records: VmRecord[]; errors: RecordError[] }>;
}

/**
 * One JSON file per VM, written atomically: temp file, fsync, rename, fsync of the directory. Files are
 * 0600 in a 0700 directory. Writes of one VM are serialized, and only the newest pending one is written.
 */
export class FileStateStore implements StateStore {
  readonly dir: string;
  private readonly queues = new Map<string, { running: Promise<void>; next: VmRecord | null | undefined }>();

  /** VM names, unique per state directory: claimed after a new record is written, freed before it is removed. */
  private readonly names: NameClaims;

  constructor(private readonly stateDir: string) {
    this.dir = join(stateDir, 'vms');
    this.names = new NameClaims(stateDir, async (vmId) => (await this.read(vmId))?.config.name);
  }

  private async read(vmId: string): Promise<VmRecord | undefined> {
    try {
      const parsed = VmRecord.safeParse(JSON.parse(await readFile(this.file(vmId), 'utf8')));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  private file(vmId: string): string {
    return join(this.dir, `${vmId}.json`);
  }

  put(record: VmRecord): Promise<void> {
    return this.enqueue(record.vmId, record);
  }

  delete(vmId: string): Promise<void> {
    return this.enqueue(vmId, null);
  }

  /** link(2) of a complete temp file: fails with EEXIST if the id has a record, and never exposes half a record. */
  async create(record: VmRecord): Promise<void> {
    // A delete queued for this id (a VM deleted, its id reused) comes first, or it would remove the new record.
    for (let q = this.queues.get(record.vmId); q; q = this.queues.get(record.vmId)) await q.running.catch(() => undefined);
    const target = this.file(record.vmId);
    const tmp = await this.writeTemp(record);
    try {
      await link(tmp, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new AlreadyExistsError(`VM ${record.vmId} already has a record (${target})`, record.vmId);
      throw err;
    } finally {
      await rm(tmp, { force: true });
    }
    await this.syncDir();
    // After the record: a claim's holder always has one, so a claim whose holder has none is stale.
    const name = record.config.name;
    if (name === undefined) return;
    try {
      await this.names.claim(name, record.vmId);
    } catch (err) {
      await this.remove(record.vmId);
      throw err;
    }
  }

  /** null means delete. Coalesces bursts: the last write wins and intermediate ones are skipped. */
  private enqueue(vmId: string, value: VmRecord | null): Promise<void> {
    const q = this.queues.get(vmId);
    if (q) {
      q.next = value;
      return q.running.then(() => this.queues.get(vmId)?.running);
    }
    const entry: { running: Promise<void>; next: VmRecord | null | undefined } = { running: Promise.resolve(), next: undefined };
    this.queues.set(vmId, entry);
    entry.running = (async () => {
      let current: VmRecord | null | undefined = value;
      let failure: unknown;
      try {
        while (current !== undefined) {
          // A failed write must not drop a newer one queued behind it: that one is tried too, and whoever waits
          // learns of the failure rather than of a write that never happened.
          try {
            await (current === null ? this.remove(vmId) : this.write(current));
            failure = undefined;
          } catch (err) {
            failure = err;
          }
          current = entry.next;
          entry.next = undefined;
        }
      } finally {
        this.queues.delete(vmId);
      }
      if (failure !== undefined) throw failure;
    })();
    return entry.running;
  }

  /** The delete is durable too: a crash right after it must not bring the record back. */
  private async remove(vmId: string): Promise<void> {
    // The name first: a crash between the two leaves a record without its claim (unchecked), never a claim that
    // blocks the name for good.
    const name = (await this.read(vmId))?.config.name;
    if (name !== undefined) await this.names.release(name, vmId);
    await rm(this.file(vmId), { force: true });
    await this.syncDir().catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  private async write(record: VmRecord): Promise<void> {
    await rename(await this.writeTemp(record), this.file(record.vmId));
    await this.syncDir();
  }

  private async writeTemp(record: VmRecord): Promise<string> {
    await ensurePrivateDir(this.dir, this.stateDir);
    // Unique per write: a create and a queued put of one id, or two stores on one directory, may each have one.
    const tmp = `${this.file(record.vmId)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(record));
      await fh.sync();
    } catch (err) {
      // A full disk leaves no half-written temp file behind to fill it further.
      await fh.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    return tmp;
  }

  private async syncDir(): Promise<void> {
    const dir = await open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  async list(): Promise<{ records: VmRecord[]; errors: RecordError[] }> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    const records: VmRecord[] = [];
    const errors: RecordError[] = [];
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      const where = join(this.dir, name);
      try {
        const parsed = VmRecord.safeParse(JSON.parse(await readFile(where, 'utf8')));
        if (parsed.success) records.push(parsed.data);
        else errors.push({ where, message: `not a VM record: ${formatIssues(toIssues(parsed.error))}` });
      } catch (err) {
        errors.push({ where, message: `unreadable: ${(err as Error).message}` });
      }
    }
    return { records, errors };
  }
}
