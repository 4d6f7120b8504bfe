import { readFile } from 'node:fs/promises';
import * as z from 'zod';
import { Device, formatIssues, toIssues } from 'hvplug/protocol';
import { existingFile, flagSet, intValue, nonEmpty } from './args.js';
import { defineCommand } from './command.js';
import { EXIT_OK, UsageError } from './errors.js';
import { attachRef } from './vm-ref.js';

const vmPositional = { name: 'vm', required: true, help: 'the VM: its id, its name, or an id prefix of at least 4 characters' } as const;
const VmRef = nonEmpty('a VM id, name or id prefix');

/** Checked before any plugin starts, so a typo in the file is a usage error naming the field. */
async function readDevice(path: string): Promise<Device> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`<device.json>: ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = Device.safeParse(doc);
  if (!parsed.success) throw new UsageError(`<device.json>: ${path}: ${formatIssues(toIssues(parsed.error))}`);
  return parsed.data;
}

export const attachDeviceCommand = defineCommand({
  name: 'attach-device',
  summary: 'attach a device (JSON) to a VM: cold before boot, hot while it runs; prints the device id',
  description:
    'Reads one device from a JSON file (the protocol\'s Device: {"type": "block", "id": "data0", "path": "/abs/disk.img"}, ' +
    'or net, vsock, ... as hvplug spec describes) and attaches it to the VM: cold-plugged into a created VM, hot-plugged into ' +
    'a running one when the plugin and machine allow it. Prints the device id, which detach-device takes.',
  flags: { json: { type: 'boolean', help: 'print {id, deviceId} as JSON' } },
  positionals: [vmPositional, { name: 'device.json', required: true, help: 'a JSON file holding one device' }],
  options: z.object({ vm: VmRef, 'device.json': existingFile(), json: flagSet() }),
  async action(opts, ctx) {
    const device = await readDevice(opts['device.json']);
    const host = await ctx.vmHost();
    try {
      const { vm } = await attachRef(host, opts.vm);
      const { deviceId } = await vm.addDevice({ device });
      ctx.output(opts.json).document({ id: vm.id, deviceId }, () => deviceId);
      return EXIT_OK;
    } finally {
      await host.close();
    }
  },
});

export const detachDeviceCommand = defineCommand({
  name: 'detach-device',
  summary: 'detach a device from a VM by its id (hot-unplug while it runs)',
  description: 'Detaches the device with this id (as given at attach-device or in the VM config; hvplug info lists them) from the VM.',
  flags: { json: { type: 'boolean', help: 'print {id, deviceId} as JSON' } },
  positionals: [vmPositional, { name: 'device-id', required: true, help: 'the device id, as hvplug info lists it' }],
  options: z.object({ vm: VmRef, 'device-id': nonEmpty('a device id'), json: flagSet() }),
  async action(opts, ctx) {
    const host = await ctx.vmHost();
    try {
      const { vm } = await attachRef(host, opts.vm);
      await vm.removeDevice({ deviceId: opts['device-id'] });
      ctx.output(opts.json).document({ id: vm.id, deviceId: opts['device-id'] }, () => opts['device-id']);
      return EXIT_OK;
    } finally {
      await host.close();
    }
  },
});

export const resizeCommand = defineCommand({
  name: 'resize',
  summary: 'set a VM\'s online vCPUs (--vcpus) and/or memory (--memory)',
  description:
    'Sets the number of online vCPUs and/or the memory size of a running VM, within the vcpus.max and memory.maxMiB its ' +
    'config allows (hvplug run --vm-config with {"vcpus": {"boot": 1, "max": 4}}, for instance). Prints the new sizes.',
  flags: {
    vcpus: { type: 'string', value: '<n>', help: 'online vCPUs, 1-512' },
    memory: { type: 'string', value: '<MiB>', help: 'memory size in MiB, at least 16' },
    json: { type: 'boolean', help: 'print {id, vcpus, memoryMiB} as JSON (the fields resized)' },
  },
  positionals: [vmPositional],
  options: z.object({ vm: VmRef, vcpus: z.optional(intValue(1, 512)), memory: z.optional(intValue(16, 16 * 1024 * 1024)), json: flagSet() }),
  async action(opts, ctx) {
    if (opts.vcpus === undefined && opts.memory === undefined) throw new UsageError('give --vcpus <n>, --memory <MiB> or both');
    const host = await ctx.vmHost();
    try {
      const { vm } = await attachRef(host, opts.vm);
      const done: { vcpus?: number; memoryMiB?: number } = {};
      if (opts.vcpus !== undefined) done.vcpus = (await vm.resizeVcpus({ count: opts.vcpus })).vcpus;
      if (opts.memory !== undefined) done.memoryMiB = (await vm.resizeMemory({ sizeMiB: opts.memory })).memoryMiB;
      ctx.output(opts.json).document({ id: vm.id, ...done }, () =>
        [done.vcpus !== undefined ? `vcpus ${done.vcpus}` : '', done.memoryMiB !== undefined ? `memory ${done.memoryMiB} MiB` : ''].filter(Boolean).join(', '),
      );
      return EXIT_OK;
    } finally {
      await host.close();
    }
  },
});
