import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import * as z from 'zod';
import { formatIssues, Id, toIssues, VmConfig } from 'hvplug/protocol';
import { flagSet, nonEmpty } from './args.js';
import { defineCommand } from './command.js';
import { CliFailure, EXIT_OK } from './errors.js';
import { attachRef, ensureNameFree } from './vm-ref.js';
import { errorText, pidOf } from './vm-util.js';

/**
 * What hvplug save keeps beside the plugin's snapshot, as virsh keeps the domain XML inside its save file:
 * which plugin wrote the snapshot and the VM's config, id and name, which vm/restore needs and the snapshot
 * (the plugin's own format) need not carry.
 */
const SavedVm = z.object({
  format: z.literal('hvplug-saved-vm'),
  version: z.literal(1),
  vmId: Id,
  plugin: z.string().min(1),
  config: VmConfig,
  savedAt: z.string(),
});
type SavedVm = z.output<typeof SavedVm>;

export const sidecarOf = (file: string): string => `${file}.hvplug.json`;

/** A path whose directory exists, made absolute (the protocol wants absolute paths). */
const outputFile = z.string().transform((s, ctx) => {
  const p = resolve(s);
  try {
    if (statSync(dirname(p)).isDirectory()) return p;
  } catch {
    // Reported below.
  }
  ctx.addIssue({ code: 'custom', message: `cannot write ${p}: ${dirname(p)} is not a directory` });
  return z.NEVER;
});

async function writeSidecar(path: string, saved: SavedVm): Promise<void> {
  const fh = await open(path, 'w', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(saved, null, 2)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function readSidecar(file: string): Promise<SavedVm> {
  const path = sidecarOf(file);
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CliFailure(`${file} is not a VM saved by hvplug save: ${missing ? `${path} is missing` : `${path}: ${errorText(err)}`}`);
  }
  const parsed = SavedVm.safeParse(doc);
  if (!parsed.success) throw new CliFailure(`${path} is not hvplug save's description of a VM: ${formatIssues(toIssues(parsed.error))}`);
  return parsed.data;
}

export const saveCommand = defineCommand({
  name: 'save',
  summary: 'save a running VM to a file and end it (as virsh save); restore brings it back',
  description:
    'Pauses the VM if it runs, has its plugin write its memory and device state to <file> (vm/save), writes what ' +
    'restore needs beside it (<file>.hvplug.json: plugin, config, id and name), then stops and deletes the VM: its ' +
    'record leaves the state directory, and hvplug restore <file> brings it back running. If the save fails, a VM ' +
    'that was running is resumed and kept.',
  flags: { json: { type: 'boolean', help: 'print {id, name, path, sizeBytes} as JSON' } },
  positionals: [
    { name: 'vm', required: true, help: 'the VM: its id, its name, or an id prefix of at least 4 characters' },
    { name: 'file', required: true, help: 'where the snapshot goes (its directory must exist)' },
  ],
  options: z.object({ vm: nonEmpty('a VM id, name or id prefix'), file: outputFile, json: flagSet() }),
  async action(opts, ctx) {
    const host = await ctx.vmHost();
    try {
      const { record, vm } = await attachRef(host, opts.vm);
      if (vm.ownedBy === undefined && vm.status !== 'running' && vm.status !== 'paused') {
        throw new CliFailure(`VM ${vm.id} is ${vm.status}: save takes a running or paused VM`);
      }
      const wasRunning = vm.status === 'running';
      if (wasRunning) await vm.pause({});
      let saved;
      try {
        saved = await vm.save({ path: opts.file }, { onProgress: (p) => ctx.logger.info({ vmId: vm.id, ...p.value }, 'saving') });
        await writeSidecar(sidecarOf(opts.file), { format: 'hvplug-saved-vm', version: 1, vmId: vm.id, plugin: record.plugin, config: vm.config, savedAt: new Date().toISOString() });
      } catch (err) {
        // Nothing is ended until the snapshot is whole: the VM goes on as it was.
        if (wasRunning) await vm.resume({}).catch((e: unknown) => ctx.logger.warn({ vmId: vm.id, err: errorText(e) }, 'cannot resume the VM after the failed save'));
        throw err;
      }
      await vm.stop({ force: true, graceMs: 0 });
      await vm.delete();
      await host.store.delete(vm.id);
      const name = vm.config.name;
      ctx.output(opts.json).document({ id: vm.id, ...(name !== undefined ? { name } : {}), path: saved.path, sizeBytes: saved.sizeBytes }, () => `${vm.id} saved to ${saved.path}`);
      return EXIT_OK;
    } finally {
      await host.close();
    }
  },
});

export const restoreCommand = defineCommand({
  name: 'restore',
  summary: 'bring a VM saved by save back, running, under its name and id (as virsh restore)',
  description:
    'Reads <file> and the <file>.hvplug.json that hvplug save wrote beside it, and has the same plugin restore the VM ' +
    '(vm/restore), under the same name and, when no VM of the state directory has it, the same id; then resumes it ' +
    '(unless --paused). Prints the id. A name another VM has taken meanwhile is refused.',
  flags: {
    paused: { type: 'boolean', help: 'leave the restored VM paused (hvplug resume runs it)' },
    json: { type: 'boolean', help: 'print {id, name, plugin, status, pid} as JSON' },
  },
  positionals: [{ name: 'file', required: true, help: 'a file written by hvplug save' }],
  options: z.object({ file: z.pipe(nonEmpty('a file path'), z.transform((s: string) => resolve(s))), paused: flagSet(), json: flagSet() }),
  async action(opts, ctx) {
    const saved = await readSidecar(opts.file);
    const host = await ctx.vmHost();
    try {
      await ensureNameFree(host, saved.config.name);
      const { records } = await host.records();
      const vmId = records.some((r) => r.vmId === saved.vmId) ? randomUUID() : saved.vmId;
      const hv = await host.hypervisor(saved.plugin);
      const vm = await hv.restoreVm({ vmId, config: saved.config, path: opts.file }, { onProgress: (p) => ctx.logger.info({ vmId, ...p.value }, 'restoring') });
      if (!opts.paused && vm.status === 'paused') {
        try {
          await vm.resume({});
        } catch (err) {
          throw new CliFailure(`VM ${vmId} was restored but stays paused: ${errorText(err)}`);
        }
      }
      const pid = await pidOf(vm, ctx);
      const name = vm.config.name;
      ctx.output(opts.json).document({ id: vmId, ...(name !== undefined ? { name } : {}), plugin: saved.plugin, status: vm.status, ...(pid !== undefined ? { pid } : {}) }, () => vmId);
      return EXIT_OK;
    } finally {
      await host.close();
    }
  },
});
