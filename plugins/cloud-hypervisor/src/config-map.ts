// hvplug's VmConfig as the Cloud Hypervisor VmConfig body of vm.create, and the problems that make a
// config impossible for Cloud Hypervisor (answered as InvalidConfig before any VMM is started).
import type { Device, Issue, VmConfig } from 'hvplug/protocol';
import type { VmConfig as ChVmConfig } from './api-types.js';
import { deviceProblem, toChDevice, type ChDevice } from './device-map.js';
import { deepMerge, isJsonObject, toJson, type JsonObject } from './json.js';
import { inVmDir, type VmPaths } from './paths.js';
import type { PluginOptions } from './settings.js';

const MiB = 1024 * 1024;

/** The ids of devices the plugin adds itself; "_" never starts an hvplug id, so no user device has them. */
export const AGENT_VSOCK_ID = '_hvplug_agent';
export const ROOT_DISK_ID = '_hvplug_root';

export interface AgentVsock {
  readonly cid: number;
  readonly port: number;
  readonly socket: string;
}

/** What the config asks for that Cloud Hypervisor cannot do; empty when it can run it. */
export function configIssues(config: VmConfig): Issue[] {
  const issues: Issue[] = [];
  if (!config.kernel && !config.firmware) {
    issues.push({ path: ['kernel'], message: 'Cloud Hypervisor boots a kernel (kernel.path) or a firmware (firmware); the config has neither' });
  }
  if (config.machine !== undefined) issues.push({ path: ['machine'], message: 'Cloud Hypervisor has a single machine type: leave machine unset' });
  if (config.console === 'socket' || config.console === 'pty') {
    issues.push({ path: ['console'], message: `console ${config.console} is not offered: the serial port goes to a log file (console "log") or nowhere ("none")` });
  }
  const ids = new Set<string>();
  let vsocks = 0;
  let rngs = 0;
  config.devices.forEach((d, i) => {
    const problem = deviceProblem(d);
    if (problem) issues.push({ path: ['devices', i], message: problem });
    if (ids.has(d.id)) issues.push({ path: ['devices', i, 'id'], message: `device id ${d.id} is used twice` });
    ids.add(d.id);
    if (d.type === 'vsock' && ++vsocks === 2) issues.push({ path: ['devices', i], message: 'Cloud Hypervisor has at most one vsock device' });
    if (d.type === 'rng' && ++rngs === 2) issues.push({ path: ['devices', i], message: 'Cloud Hypervisor has at most one rng device' });
  });
  return issues;
}

/** What the plugin will do differently from what the config says, for config/validate. */
export function configWarnings(config: VmConfig): string[] {
  const w: string[] = [];
  if (config.memory.slots !== undefined) w.push('memory.slots is ignored: Cloud Hypervisor hot-plugs memory into one region of maxMiB - sizeMiB');
  if (Object.keys(config.annotations).length) w.push('annotations are kept by hvplug but not passed to Cloud Hypervisor');
  if (config.devices.some((d) => d.type === 'virtio-fs' && d.sharedDir)) w.push('virtio-fs sharedDir is not used: the plugin connects to socketPath and starts no virtiofsd');
  w.push('guest memory is always shared (memory.shared), so that vhost-user and virtio-fs devices can be hot-plugged');
  return w;
}

/** Sets a device into the CH config: appended to its list, or as the single vsock / rng. */
export function withChDevice(body: ChVmConfig, dev: ChDevice): ChVmConfig {
  switch (dev.list) {
    case 'vsock':
      return { ...body, vsock: dev.body };
    case 'rng':
      return { ...body, rng: dev.body };
    case 'disks':
      return { ...body, disks: [...(body.disks ?? []), dev.body] };
    case 'net':
      return { ...body, net: [...(body.net ?? []), dev.body] };
    case 'fs':
      return { ...body, fs: [...(body.fs ?? []), dev.body] };
    case 'devices':
      return { ...body, devices: [...(body.devices ?? []), dev.body] };
  }
}

export interface MappedConfig {
  readonly body: ChVmConfig;
  /** The agent vsock the plugin added, when it added one. */
  readonly agent: AgentVsock | undefined;
}

/** The agent vsock a config gets: none when it has its own vsock device or the option is off. */
export function agentFor(devices: readonly Device[], options: PluginOptions, paths: VmPaths): AgentVsock | undefined {
  if (!options.agent.enabled || devices.some((d) => d.type === 'vsock')) return undefined;
  return { cid: options.agent.cid, port: options.agent.port, socket: paths.agentVsock };
}

/** The vm.create body for a config that configIssues accepts. */
export function toChConfig(config: VmConfig, options: PluginOptions, paths: VmPaths): MappedConfig {
  const maxMiB = config.memory.maxMiB ?? config.memory.sizeMiB;
  let body: ChVmConfig = {
    cpus: { boot_vcpus: config.vcpus.boot, max_vcpus: config.vcpus.max ?? config.vcpus.boot },
    memory: {
      size: config.memory.sizeMiB * MiB,
      hotplug_size: maxMiB > config.memory.sizeMiB ? (maxMiB - config.memory.sizeMiB) * MiB : undefined,
      hotplug_method: options.memoryHotplug === 'virtio-mem' ? 'VirtioMem' : 'Acpi',
      // vhost-user backends (virtio-fs included) map guest memory: it must be shared, also for later hotplug.
      shared: true,
      hugepages: config.memory.hugepages,
      prefault: config.memory.prealloc,
    },
    payload: {
      kernel: config.kernel?.path,
      cmdline: config.kernel?.cmdline || undefined,
      initramfs: config.initrd,
      firmware: config.firmware,
    },
    serial: config.console === 'log' ? { mode: 'File', file: inVmDir(paths, paths.console) } : { mode: 'Null' },
    // The virtio-console would default to the VMM's tty, which a detached VMM does not have.
    console: { mode: 'Off' },
  };
  if (config.disk) body = withChDevice(body, { list: 'disks', body: { id: ROOT_DISK_ID, path: config.disk } });
  for (const d of config.devices) body = withChDevice(body, toChDevice(d, paths));
  const agent = agentFor(config.devices, options, paths);
  if (agent) body = withChDevice(body, { list: 'vsock', body: { id: AGENT_VSOCK_ID, cid: agent.cid, socket: inVmDir(paths, agent.socket) } });
  if (Object.keys(options.overrides).length === 0) return { body, agent };
  const merged = deepMerge(toJson(body) as JsonObject, options.overrides);
  // The overrides may put anything there: the VMM validates the body and answers 400 with its reason.
  return { body: merged as unknown as ChVmConfig, agent };
}

/** The CH config's boot vCPUs and memory (what vm.info reports), with the hvplug config as fallback. */
export function sizesOf(ch: JsonObject | undefined, fallback: VmConfig): { vcpus: number; maxVcpus: number; memoryMiB: number; maxMemoryMiB: number } {
  const cpus = isJsonObject(ch?.cpus) ? ch.cpus : {};
  const memory = isJsonObject(ch?.memory) ? ch.memory : {};
  const num = (v: unknown, d: number): number => (typeof v === 'number' ? v : d);
  const size = num(memory.size, fallback.memory.sizeMiB * MiB);
  const fallbackHotplug = ((fallback.memory.maxMiB ?? fallback.memory.sizeMiB) - fallback.memory.sizeMiB) * MiB;
  return {
    vcpus: num(cpus.boot_vcpus, fallback.vcpus.boot),
    maxVcpus: num(cpus.max_vcpus, fallback.vcpus.max ?? fallback.vcpus.boot),
    memoryMiB: Math.round(size / MiB),
    maxMemoryMiB: Math.round((size + num(memory.hotplug_size, ch ? 0 : fallbackHotplug)) / MiB),
  };
}
