import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { link, open, readdir, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { formatIssues, Id, METHOD_NAMES, methodDef, PluginState, toIssues, VmConfig, VmStatus } from 'hvplug/protocol';
import { AlreadyExistsError, UnreadableFileError } from '../errors/index.js';
import { randomHex } from './lazy-crypto.js';
import { NameClaims } from './name-claims.js';
import { ensurePrivateDir, refuseUnsafeToRead } from './paths.js';
import { readSmallFile } from './small-file.js';

/** A record's name for a method of the table whose `record` is `kind`: a string, checked to be one of them. */
function recordingMethod(kind: 'create' | 'delete'): z.ZodMiniString<string> {
  const names: readonly string[] = METHOD_NAMES.filter((m) => methodDef(m).record === kind);
  return z.string().check(z.refine((m) => names.includes(m), { message: `one of ${names.join(', ')}` }));
}

/** The methods that bring a VM into existence with a record (the table's `record: 'create'`). */
export const CreatingMethod = recordingMethod('create');
export type CreatingMethod = z.infer<typeof CreatingMethod>;

/** The methods whose success removes a VM's record (the table's `record: 'delete'`). */
export const DeletingMethod = recordingMethod('delete');
export type DeletingMethod = z.infer<typeof DeletingMethod>;

/**
 * A VM in live migration (PluginHost.migrate). The destination's record is written `incoming` before the source
 * sends, the source's is marked `outgoing` before that; the owner is the destination once its record has no mark,
 * the source until then. See docs/migration.md.
 */
export const MigrationMark = z.object({
  role: z.enum(['incoming', 'outgoing']),
  /** The other host (PluginHost.identity): hostname and state directory. */
  peer: z.string().check(z.maxLength(4096)),
  since: z.string(),
});
export type MigrationMark = z.output<typeof MigrationMark>;

/** What the host keeps per VM so that nothing is lost when the plugin or the host dies. */
export const VmRecord = z.object({
  vmId: Id,
  plugin: z.string(),
  /**
   * Where the plugin was found when the VM was last written (PluginSpec.source: a config file, a plugin
   * directory, `builtin` or `api`): a later host that does not know the name looks there.
   */
  source: z.optional(z.string()),
  config: VmConfig,
  /** The plugin's opaque state, handed back at vm/recover. */
  state: z.optional(PluginState),
  status: VmStatus,
  /**
   * The creating call (the table's `record: 'create'` methods) was sent and its answer is not recorded yet: the
   * record is written before the call, so that no VM exists without one. A host that finds it so at re-attach
   * resolves it (PluginHost.recoverOne): the VM is recovered if the plugin finds it, else cleaned up and dropped.
   */
  pending: z.optional(CreatingMethod),
  /**
   * The delete (the table's `record: 'delete'` methods) sent for this VM, written before it is sent: a host that
   * finds it at re-attach finishes the delete (PluginHost.recoverOne) rather than calling the VM lost.
   */
  deleting: z.optional(DeletingMethod),
  migration: z.optional(MigrationMark),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type VmRecord = z.output<typeof VmRecord>;

/**
 * A record as FileStateStore keeps it: `rev` names this write of the file, so that a status file can say which
 * write it extends (absent in files of hosts before status files; such a record takes no status file).
 */
const StoredRecord = z.extend(VmRecord, { rev: z.optional(z.string().check(z.maxLength(64))) });
type StoredRecord = z.output<typeof StoredRecord>;

/**
 * A VM's volatile status (FileStateStore): written after the record `rev` it extends, replacing that record's
 * status while that write is the file's. Nothing else of the record is in it.
 */
const VolatileStatus = z.object({ vmId: Id, rev: z.string().check(z.maxLength(64)), status: VmStatus, updatedAt: z.string().check(z.maxLength(64)) });
type VolatileStatus = z.output<typeof VolatileStatus>;

/**
 * A status file's length: its JSON (some 170 bytes: an id is at most 64 characters) padded with spaces, so that
 * one write(2) at offset 0 replaces it in place. That is a page-cache copy; a temp file and a rename each time
 * are journaled metadata changes, 6-30 times slower on this project's test machine's ext4 (0.3-1.5 ms a write
 * beside other fsyncing processes, against 0.05). A status that does not fit is written durably instead.
 */
const STATUS_SLOT_BYTES = 256;
/** A status file bigger than this is not one (read no further). */
const MAX_STATUS_FILE_BYTES = 4096;
/**
 * The most of a record file get() reads: a config with its devices and the plugin's state are some kilobytes; a
 * bigger record is left to list(), which reads it through the thread pool.
 */
const MAX_RECORD_BYTES = 1024 * 1024;
/**
 * The most of a record file list() reads: far above any record (the plugin's state is some kilobytes), so that a
 * stray big file in vms/ is reported rather than read whole into memory.
 */
export const MAX_LISTED_RECORD_BYTES = 16 * 1024 * 1024;

/**
 * What a VM's record file holds as a store last wrote or read it: its rev, and the record but its status as JSON;
 * `record`, a value record (valueRecord) with that durable part, when the store has one.
 */
interface OnDisk {
  rev: string;
  durable: string;
  record?: VmRecord;
}

/** The record without what a status file may carry: a write that changes nothing else need not be durable. */
function durablePart(r: VmRecord): string {
  const { status: _status, updatedAt: _updatedAt, ...rest } = r;
  return JSON.stringify(rest);
}

/** Records made of values nobody changes in place (valueRecord). */
const valueRecords = new WeakSet<VmRecord>();

/**
 * Marks a record whose members, the config and state within, are never changed in place once put (a changed one is
 * a new object), as the host's are: the shim replaces a VM's config and state, it never edits them. FileStateStore
 * compares such a record with the last it wrote by identity rather than as JSON (durablePart: some 6 µs for a QEMU
 * VM's 1 kB record, twice per pause and resume). Records not marked are compared as JSON.
 */
export function valueRecord(record: VmRecord): VmRecord {
  valueRecords.add(record);
  return record;
}

/**
 * Whether two value records have the same durable part: every member but the status and updatedAt the same value.
 * False may be wrong (a member present as undefined in one only), and costs a JSON comparison; true is not.
 */
function sameDurable(a: VmRecord, b: VmRecord): boolean {
  const x = a as unknown as Record<string, unknown>;
  const y = b as unknown as Record<string, unknown>;
  let members = 0;
  for (const k in y) {
    members++;
    if (k !== 'status' && k !== 'updatedAt' && (x[k] !== y[k] || !Object.hasOwn(x, k))) return false;
  }
  for (const _k in x) members--;
  return members === 0;
}

export interface RecordError {
  /** Where the bad record is (a file path for the file store). */
  where: string;
  message: string;
}

/**
 * Pluggable persistence (the Kata library API asked for it): bring your own, or use FileStateStore.
 *
 * Durable and volatile facts: a record's vmId, plugin, source, config, state, pending call, delete mark, migration
 * mark and createdAt must survive a power loss; its status need not, as the VMM it describes does not survive one either,
 * and a re-attach asks the plugin (vm/recover) in any case. A store may write a put that changes only the status
 * (and updatedAt) so that it survives a crash of the host process but not of the machine, as FileStateStore does.
 */
export interface StateStore {
  /** Resolves once the record is written: durably, but for a change of status alone (see above). */
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
  /**
   * The record list() has for `vmId`, found without reading the rest; undefined when the store cannot tell it alone
   * (list() has the last word then). Stores without it are asked through list().
   */
  get?(vmId: string): Promise<VmRecord | undefined>;
}

/**
 * One JSON file per VM (`<vmId>.json`), written atomically: temp file, fsync, rename, fsync of the directory.
 * A put that changes nothing but the status (pause, resume, a VMM's exit) writes `<vmId>.status` instead, in
 * place and without fsync (writeStatus). It survives a crash of the host process (the page cache keeps it) and
 * may be lost, empty or torn by a power loss, when the VMM is gone too; list() then gives the record's own
 * status, the one of its last durable write, and a re-attach asks the plugin. A status file names the record
 * write it extends (`rev`), so a durable write after it makes it stale without a second write. Files are 0600
 * in a 0700 directory. Writes of one VM are serialized, and only the newest pending one is written.
 */
export class FileStateStore implements StateStore {
  readonly dir: string;
  private readonly queues = new Map<string, { running: Promise<void>; next: VmRecord | null | undefined }>();
  /**
   * What each VM's record file holds as this store last wrote or read it (its rev, and the record but its status):
   * the base of a status-only write. Absent: the next put is durable.
   */
  private readonly onDisk = new Map<string, OnDisk>();
  /** VMs whose status file this store has made exactly STATUS_SLOT_BYTES long, with its path: written in place from then on. */
  private readonly slotted = new Map<string, string>();

  /** VM names, unique per state directory: claimed after a new record is written, freed before it is removed. */
  private readonly names: NameClaims;

  constructor(private readonly stateDir: string) {
    this.dir = join(stateDir, 'vms');
    this.names = new NameClaims(stateDir, async (vmId) => (await this.read(vmId))?.config.name);
  }

  /**
   * A VM's record as its file holds it; undefined only when there is no file. One there that is no record of the VM
   * (torn, garbage, a FIFO) is an UnreadableFileError naming it: taken for no record, it would give the VM's name to
   * another VM, and once the file is mended two VMs would bear it.
   */
  private async read(vmId: string): Promise<VmRecord | undefined> {
    const where = this.file(vmId);
    // Any failure but ENOENT (EMFILE, EACCES, EIO) is thrown: it says nothing of whether the record is there.
    const file = await readSmallFile(where, MAX_LISTED_RECORD_BYTES);
    if (file === undefined) return undefined;
    const stored = storedRecord(file.text, where);
    if ('message' in stored) throw new UnreadableFileError(where, stored.message);
    if (stored.vmId !== vmId) throw new UnreadableFileError(where, `holds the record of VM ${stored.vmId}, not of ${vmId}`);
    const { rev: _rev, ...record } = stored;
    return record;
  }

  private file(vmId: string): string {
    return join(this.dir, `${vmId}.json`);
  }

  private statusFile(vmId: string): string {
    return join(this.dir, `${vmId}.status`);
  }

  put(record: VmRecord): Promise<void> {
    // A change of status alone, with nothing queued for the VM and its status file in place, is written now: one
    // write(2) (overwrite), without the queue's promises and turns, which cost as much as the rest of it.
    const file = this.queues.has(record.vmId) ? undefined : this.slotted.get(record.vmId);
    if (file !== undefined) {
      try {
        const slot = this.statusSlotOf(record);
        if (slot && overwrite(file, slot)) return Promise.resolve();
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
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
    const rev = newRev();
    const tmp = await this.writeTemp(record, rev);
    try {
      await link(tmp, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new AlreadyExistsError(`VM ${record.vmId} already has a record (${target})`, record.vmId);
      throw err;
    } finally {
      await rm(tmp, { force: true });
    }
    await this.syncDir();
    this.onDisk.set(record.vmId, onDisk(rev, durablePart(record), record));
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
    // A record that cannot be read names no name to free: its claim stays, and is stale once the record is gone.
    const name = await this.read(vmId).then(
      (r) => r?.config.name,
      (err: unknown) => {
        if (err instanceof UnreadableFileError) return undefined;
        throw err;
      },
    );
    if (name !== undefined) await this.names.release(name, vmId);
    this.onDisk.delete(vmId);
    this.slotted.delete(vmId);
    await rm(this.file(vmId), { force: true });
    // After the record: one left behind by a crash names a rev no record has, and is never read.
    await rm(this.statusFile(vmId), { force: true });
    await this.syncDir().catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  /**
   * The status file's bytes when `record` changes nothing but the status (and updatedAt) of this store's last write
   * of it; undefined when it needs a durable write.
   */
  private statusSlotOf(record: VmRecord): Buffer | undefined {
    const base = this.onDisk.get(record.vmId);
    if (base === undefined) return undefined;
    if (!valueRecords.has(record) || base.record === undefined || !sameDurable(base.record, record)) {
      if (durablePart(record) !== base.durable) return undefined;
      if (valueRecords.has(record)) base.record = record;
    }
    return statusSlot({ vmId: record.vmId, rev: base.rev, status: record.status, updatedAt: record.updatedAt });
  }

  private async write(record: VmRecord): Promise<void> {
    const slot = this.statusSlotOf(record);
    if (slot) return this.writeStatus(record.vmId, slot);
    const rev = newRev();
    // Forgotten first: a failed write may or may not have replaced the file, and the next one is durable then.
    this.onDisk.delete(record.vmId);
    await rename(await this.writeTemp(record, rev), this.file(record.vmId));
    await this.syncDir();
    this.onDisk.set(record.vmId, onDisk(rev, durablePart(record), record));
  }

  /**
   * Not synced (see the class comment). The first write of a VM's status file creates it whole (temp file,
   * rename); later ones overwrite it in place with one write(2) of the whole slot, within one page, which a crash
   * of this process cannot leave half done. A reader in another process may, rarely, read while it is copied: a
   * status file that does not parse then gives the record's own status, as after a power loss.
   */
  private async writeStatus(vmId: string, slot: Buffer): Promise<void> {
    const slotted = this.slotted.get(vmId);
    if (slotted !== undefined) {
      if (overwrite(slotted, slot)) return;
      this.slotted.delete(vmId);
    }
    const file = this.statusFile(vmId);
    let fh: FileHandle;
    try {
      fh = await open(file, constants.O_RDWR | constants.O_NOFOLLOW);
    } catch (err) {
      // Absent, or a symlink in its place: made whole beside it and renamed over it (the link, not what it names).
      if (!notInPlace(err)) throw err;
      const tmp = this.tempOf(file);
      try {
        await writeFile(tmp, slot, { mode: 0o600 });
        await rename(tmp, file);
      } catch (e) {
        await rm(tmp, { force: true });
        throw e;
      }
      this.slotted.set(vmId, file);
      return;
    }
    try {
      const { bytesWritten } = await fh.write(slot, 0, slot.length, 0);
      if (bytesWritten !== slot.length) throw new Error(`${file}: wrote ${bytesWritten} of ${slot.length} bytes`);
      // Found on disk (an earlier host's, or one a power loss left longer): cut to the slot, once.
      await fh.truncate(slot.length);
      this.slotted.set(vmId, file);
    } finally {
      await fh.close();
    }
  }

  /** Unique per write: a create and a queued put of one id, or two stores on one directory, may each have one. */
  private tempOf(file: string): string {
    return `${file}.${process.pid}.${randomHex(6)}.tmp`;
  }

  private async writeTemp(record: VmRecord, rev: string): Promise<string> {
    await ensurePrivateDir(this.dir, this.stateDir);
    const tmp = this.tempOf(this.file(record.vmId));
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify({ ...record, rev }));
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
    refuseUnsafeToRead(this.stateDir, this.dir);
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    const records: VmRecord[] = [];
    const errors: RecordError[] = [];
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      const where = join(this.dir, name);
      let stored: StoredRecord | RecordError;
      try {
        const file = await readSmallFile(where, MAX_LISTED_RECORD_BYTES);
        // Deleted since readdir: not a record any more.
        if (file === undefined) continue;
        stored = storedRecord(file.text, where);
      } catch (err) {
        errors.push({ where, message: err instanceof UnreadableFileError ? err.reason : `unreadable: ${(err as Error).message}` });
        continue;
      }
      if ('message' in stored) errors.push(stored);
      // A copy under another name would list its VM twice, and outlive the VM's delete: reported, not listed.
      else if (`${stored.vmId}.json` !== name) errors.push({ where, message: `holds the record of VM ${stored.vmId}, not of ${name.slice(0, -'.json'.length)} (each VM's record is <vmId>.json)` });
      else records.push(this.current(stored, stored.rev === undefined ? undefined : this.readStatus(stored.vmId)));
    }
    return { records, errors };
  }

  /**
   * One VM's record as list() gives it, from its own file alone; undefined when that file is not a record of the VM
   * (none, unreadable, another's, or over MAX_RECORD_BYTES), which list() then reports as it does. Read synchronously,
   * as overwrite() writes: through the thread pool, the seven calls of a record and its status file are as many
   * wake-ups of this process, which cost a daemon's call by reference (hvplug/callRef) as much as the call (0.9 of
   * 2.5 ms, idle machine); these take some 50 µs. Opened non-blocking, and read only as a regular file: a FIFO put
   * there cannot stall the host.
   */
  get(vmId: string): Promise<VmRecord | undefined> {
    if (!Id.safeParse(vmId).success) return Promise.resolve(undefined);
    try {
      refuseUnsafeToRead(this.stateDir, this.dir);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const text = readSmallFileSync(this.file(vmId), MAX_RECORD_BYTES);
    const stored = text === undefined ? undefined : storedRecord(text, this.file(vmId));
    if (stored === undefined || 'message' in stored || stored.vmId !== vmId) return Promise.resolve(undefined);
    return Promise.resolve(this.current(stored, stored.rev === undefined ? undefined : this.readStatus(vmId)));
  }

  /**
   * A stored record with its status file's status when that file extends this write of it. Seeds what this store
   * knows is on disk, when it has nothing of its own for the VM: a write of its own since the read is newer.
   */
  private current(stored: StoredRecord, volatile: VolatileStatus | undefined): VmRecord {
    const { rev, ...record } = stored;
    if (rev === undefined) return record;
    const vmId = record.vmId;
    if (!this.onDisk.has(vmId) && !this.queues.has(vmId)) this.onDisk.set(vmId, { rev, durable: durablePart(record) });
    if (volatile?.rev === rev) {
      record.status = volatile.status;
      record.updatedAt = volatile.updatedAt;
    }
    return record;
  }

  /** A VM's status file, if it is one (volatileStatus); read as get() reads it (readSmallFileSync: a FIFO stalls nothing). */
  private readStatus(vmId: string): VolatileStatus | undefined {
    const text = readSmallFileSync(this.statusFile(vmId), MAX_STATUS_FILE_BYTES);
    return text === undefined ? undefined : volatileStatus(text, vmId);
  }
}

/** A record file's text: the record, or why it is not one. */
function storedRecord(text: string, where: string): StoredRecord | RecordError {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { where, message: `unreadable: ${(err as Error).message}` };
  }
  const parsed = StoredRecord.safeParse(json);
  return parsed.success ? parsed.data : { where, message: `not a VM record: ${formatIssues(toIssues(parsed.error))}` };
}

/**
 * A status file's text, if it is one of the VM: empty, torn or garbage (a power loss) is no status file, and the
 * record's own status stands. Not an error: the status was never promised past a power loss.
 */
function volatileStatus(text: string, vmId: string): VolatileStatus | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = VolatileStatus.safeParse(json);
  return parsed.success && parsed.data.vmId === vmId ? parsed.data : undefined;
}

/**
 * A regular file's text when it is at most `max` bytes; undefined when it is missing, not a regular file (a symlink
 * included: the store writes none), longer, or unreadable. Opened non-blocking, so that a FIFO in its place neither
 * blocks the open nor is read.
 */
function readSmallFileSync(file: string, max: number): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > max) return undefined;
    const buf = Buffer.allocUnsafe(st.size + 1);
    let got = 0;
    for (let n = -1; n !== 0 && got < buf.length; got += n) n = readSync(fd, buf, got, buf.length - got, got);
    // One that grew while read is left to the caller's other way, as one too long.
    return got < buf.length ? buf.toString('utf8', 0, got) : undefined;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Replaces a status file of STATUS_SLOT_BYTES in place; false when it is not there. Synchronous: open, one write
 * of 256 bytes to the page cache, close take some 5 µs, where the same calls through the thread pool take three
 * round trips of the event loop, each a wake-up of this process, which on a loaded machine cost more than the
 * rest of a vm/pause (measured: 0.05 ms idle, ~1 ms a write under load). A kernel that throttles dirty pages
 * could make it wait; so it could any write the call waits for.
 */
function overwrite(file: string, slot: Buffer): boolean {
  let fd: number;
  try {
    // Not through a symlink: one put in a status file's place (to another VM's record) would have that written over.
    fd = openSync(file, constants.O_WRONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (notInPlace(err)) return false;
    throw err;
  }
  try {
    const written = writeSync(fd, slot, 0, slot.length, 0);
    if (written !== slot.length) throw new Error(`${file}: wrote ${written} of ${slot.length} bytes`);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** A status file that is not there to be written in place: none, or a symlink (O_NOFOLLOW's ELOOP). */
const notInPlace = (err: unknown): boolean => ['ENOENT', 'ELOOP'].includes((err as NodeJS.ErrnoException).code ?? '');

/** The status file's bytes, padded to STATUS_SLOT_BYTES; undefined when it does not fit. */
function statusSlot(s: VolatileStatus): Buffer | undefined {
  const json = JSON.stringify(s);
  if (Buffer.byteLength(json) > STATUS_SLOT_BYTES) return undefined;
  // One buffer (from node's pool), not the JSON's, its padding's and their concatenation.
  const slot = Buffer.allocUnsafe(STATUS_SLOT_BYTES);
  slot.fill(0x20, slot.write(json));
  return slot;
}

function onDisk(rev: string, durable: string, record: VmRecord): OnDisk {
  return valueRecords.has(record) ? { rev, durable, record } : { rev, durable };
}

function newRev(): string {
  return randomHex(8);
}
