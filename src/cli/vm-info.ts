import * as z from 'zod';
import { flagSet, nonEmpty } from './args.js';
import { defineCommand } from './command.js';
import { EXIT_OK } from './errors.js';
import { table } from './output.js';
import { safeLine } from './safe-text.js';
import { attachRef } from './vm-ref.js';
import { errorText, infoOf } from './vm-util.js';

interface InfoDoc {
  id: string;
  name?: string;
  plugin: string;
  status: string;
  owner?: string;
  created: string;
  updated: string;
  pid?: number;
  vcpus: number;
  memoryMiB: number;
  machine?: string;
  accel?: string;
  devices: { id: string; type: string }[];
  console?: { kind: string; path: string };
  details?: Record<string, unknown>;
}

export const infoCommand = defineCommand({
  name: 'info',
  summary: 'show a VM: status, plugin, pid, size, devices, console, owner',
  description:
    'Shows what the state directory records of the VM and, when its plugin can tell, what the VM is now (vm/info): ' +
    'status, guest pid, vCPUs, memory, machine, devices, and where its console is (vm/console). A VM another live host ' +
    'drives is shown from its record, with that host as its owner.',
  flags: { json: { type: 'boolean', help: 'print one JSON document: {id, name, plugin, status, owner, pid, vcpus, memoryMiB, devices, console, ...}' } },
  positionals: [{ name: 'vm', required: true, help: 'the VM: its id, its name, or an id prefix of at least 4 characters' }],
  options: z.object({ vm: nonEmpty('a VM id, name or id prefix'), json: flagSet() }),
  async action(opts, ctx) {
    const host = await ctx.vmHost();
    let doc: InfoDoc;
    try {
      const { record, vm } = await attachRef(host, opts.vm);
      doc = {
        id: vm.id,
        ...(vm.config.name !== undefined ? { name: vm.config.name } : {}),
        plugin: record.plugin,
        status: vm.status,
        ...(vm.ownedBy !== undefined ? { owner: vm.ownedBy } : {}),
        created: record.createdAt,
        updated: record.updatedAt,
        vcpus: vm.config.vcpus.boot,
        memoryMiB: vm.config.memory.sizeMiB,
        ...(vm.config.machine !== undefined ? { machine: vm.config.machine } : {}),
        devices: vm.config.devices.map((d) => ({ id: d.id, type: d.type })),
      };
      // Another host's VM is looked at, not asked: the plugin here has not re-attached it.
      if (vm.ownedBy === undefined && vm.status !== 'lost') {
        const info = await infoOf(vm, ctx, ['created', 'running', 'paused', 'stopped']);
        if (info) {
          doc.status = info.status;
          doc.vcpus = info.vcpus;
          doc.memoryMiB = info.memoryMiB;
          doc.devices = info.devices;
          if (info.pid !== undefined) doc.pid = info.pid;
          if (info.machine !== undefined) doc.machine = info.machine;
          if (info.accel !== undefined) doc.accel = info.accel;
          if (Object.keys(info.details).length) doc.details = info.details;
        }
        if (vm.hypervisor.capabilities.methods.includes('vm/console') && vm.config.console !== 'none') {
          try {
            doc.console = await vm.console({});
          } catch (err) {
            ctx.logger.info({ vmId: vm.id, err: errorText(err) }, 'vm/console failed');
          }
        }
      }
    } finally {
      await host.close();
    }
    ctx.output(opts.json).document(doc, () => {
      const rows: [string, string][] = [
        ['Id:', doc.id],
        ['Name:', doc.name ?? '-'],
        ['Plugin:', doc.plugin],
        ['Status:', doc.status],
        ['Owner:', doc.owner ?? '-'],
        ['Pid:', doc.pid !== undefined ? String(doc.pid) : '-'],
        ['vCPUs:', String(doc.vcpus)],
        ['Memory:', `${doc.memoryMiB} MiB`],
        ['Machine:', doc.machine ?? '-'],
        ['Console:', doc.console ? `${doc.console.kind} ${doc.console.path}` : '-'],
        ['Created:', doc.created],
        ['Devices:', doc.devices.length ? doc.devices.map((d) => `${d.id} (${d.type})`).join(', ') : '-'],
      ];
      return table(rows.map((r) => r.map(safeLine)));
    });
    return EXIT_OK;
  },
});

const ms = (v: number): string => (v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);

export const statsCommand = defineCommand({
  name: 'stats',
  summary: "show a VM's resource use now: CPU time, memory, uptime, the plugin's counters",
  description:
    "Asks the VM's plugin what its processes use (vm/stats): CPU time, resident memory, uptime, and whatever counters the " +
    'plugin adds (block and network I/O where its VMM tells). Only a VM this host can drive is asked: one another live ' +
    'host drives is refused, naming that host.',
  flags: { json: { type: 'boolean', help: 'print one JSON document: {id, cpuTimeMs, memoryRssBytes, uptimeMs, counters}' } },
  positionals: [{ name: 'vm', required: true, help: 'the VM: its id, its name, or an id prefix of at least 4 characters' }],
  options: z.object({ vm: nonEmpty('a VM id, name or id prefix'), json: flagSet() }),
  async action(opts, ctx) {
    const host = await ctx.vmHost();
    let doc: { id: string; cpuTimeMs: number; memoryRssBytes: number; uptimeMs: number; counters: Record<string, number> };
    try {
      const { vm } = await attachRef(host, opts.vm);
      doc = { id: vm.id, ...(await vm.stats({})) };
    } finally {
      await host.close();
    }
    ctx.output(opts.json).document(doc, () => {
      const rows: [string, string][] = [
        ['Id:', doc.id],
        ['CPU time:', ms(doc.cpuTimeMs)],
        ['Memory (RSS):', `${(doc.memoryRssBytes / 1024 / 1024).toFixed(1)} MiB`],
        ['Uptime:', ms(doc.uptimeMs)],
        ...Object.entries(doc.counters).map(([k, v]): [string, string] => [`${k}:`, String(v)]),
      ];
      return table(rows.map((r) => r.map(safeLine)));
    });
    return EXIT_OK;
  },
});
