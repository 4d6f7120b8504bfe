// vm/save: vm.snapshot of a paused VM into a directory next to `path`, packed into the one file `path`.
// vm/restore: the file unpacked into the new VM's directory, a new VMM, vm.restore from it; the VM
// comes back paused, as Cloud Hypervisor restores it.
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errors, PluginError, type Handlers } from 'hvplug/plugin-sdk';
import { ArchiveError, packDir, unpackTo } from '../archive.js';
import { chCall } from '../errors.js';
import { sizesOf } from '../config-map.js';
import { isJsonObject } from '../json.js';
import { abandon, checkNew, startVmm } from '../new-vm.js';
import { parseOptions } from '../settings.js';
import type { Registry } from '../registry.js';
import { readSidecar, relocateConfig, writeSidecar } from '../snapshot-files.js';

const notASnapshot = (path: string, why: string): PluginError =>
  errors.invalidConfig([{ path: ['path'], message: `${path} is not a snapshot of this plugin: ${why}` }]);

export function snapshotHandlers(reg: Registry): Handlers {
  return {
    'vm/save': async ({ vmId, path }, ctx) => {
      const vm = reg.require(vmId);
      return vm.exclusive(async () => {
        vm.reattach();
        vm.require(['paused']);
        await mkdir(dirname(path), { recursive: true });
        // Beside the target: the same file system, so packing is the only copy.
        const staging = await mkdtemp(join(dirname(path), `.${basename(path)}.ch-`));
        try {
          ctx.progress('snapshotting', 5);
          await chCall(() => vm.client.snapshotVm({ destination_url: `file://${staging}` }, { signal: ctx.signal, timeoutMs: 280_000 }));
          await vm.sync();
          await writeSidecar(staging, {
            format: 1,
            vmId,
            dir: vm.paths.dir,
            devices: vm.config.devices,
            agent: vm.agent ?? null,
            bootMemoryMiB: vm.bootMemoryMiB,
          });
          ctx.progress('packing', 50);
          await packDir(staging, path);
          ctx.progress('saved', 100);
        } finally {
          await rm(staging, { recursive: true, force: true });
        }
        return { path, sizeBytes: (await stat(path)).size, state: vm.stateJson() };
      }, ctx.signal);
    },

    'vm/restore': async ({ vmId, config, path }, ctx) => {
      checkNew(reg, vmId);
      const { options, issues } = parseOptions(config.plugin);
      if (issues.length) throw errors.invalidConfig(issues);
      const paths = reg.paths(vmId);
      const vm = await startVmm(reg, { vmId, config, options, agent: undefined, signal: ctx.signal }, async (v) => {
        ctx.progress('unpacking', 5);
        await mkdir(paths.restoreDir, { mode: 0o700 });
        await unpackTo(path, paths.restoreDir).catch((err: unknown) => {
          throw err instanceof ArchiveError ? notASnapshot(path, err.message) : err;
        });
        const sidecar = await readSidecar(paths.restoreDir);
        if (typeof sidecar === 'string') throw notASnapshot(path, sidecar);
        const ch = await relocateConfig(paths.restoreDir, sidecar.dir, paths.dir).catch((err: Error) => {
          throw notASnapshot(path, `its config.json is unreadable: ${err.message}`);
        });
        // The snapshot decides what the VM is; the caller's config contributes the rest (name, annotations...).
        const sizes = sizesOf(isJsonObject(ch) ? ch : undefined, config);
        v.config = {
          ...config,
          vcpus: { boot: sizes.vcpus, max: sizes.maxVcpus },
          memory: { ...config.memory, sizeMiB: sizes.memoryMiB, maxMiB: sizes.maxMemoryMiB },
          devices: sidecar.devices,
        };
        v.agent = sidecar.agent ? { ...sidecar.agent, socket: paths.agentVsock } : undefined;
        v.bootMemoryMiB = sidecar.bootMemoryMiB || sizes.memoryMiB;
      });
      try {
        ctx.progress('restoring', 30);
        await chCall(() => vm.client.restoreVm({ source_url: `file://${paths.restoreDir}` }, { signal: ctx.signal, timeoutMs: 280_000 }));
      } catch (err) {
        await abandon(vm);
        throw err;
      }
      reg.add(vm);
      // A new VM to the host: created first, then the paused the VMM's vm/restored event stands for.
      vm.announce('created');
      await vm.sync();
      if (vm.status === 'created') vm.announce('paused');
      // Restored in Copy mode: guest memory has been read, the unpacked files are not needed any more.
      await rm(paths.restoreDir, { recursive: true, force: true });
      await vm.persist();
      ctx.progress('restored', 100);
      return { status: vm.status, state: vm.stateJson() };
    },
  };
}
