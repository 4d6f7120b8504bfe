import { access } from 'node:fs/promises';
import { errors } from 'hvplug/plugin-sdk';
import type { Issue, VmConfig } from 'hvplug/protocol';
import { DEFAULT_MACHINE, deviceIssues, isMachine, MACHINES } from './devices.js';
import { guestSettings, type GuestSettings } from './settings.js';

export interface Normalized {
  /** The config adjusted to what the plugin will really do. */
  config: VmConfig;
  warnings: string[];
  settings: GuestSettings;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * config/validate's work, also done by every call that brings a VM up: a config that validate
 * would reject is refused (InvalidConfig), and one it would adjust is adjusted the same way.
 */
export async function normalizeConfig(input: VmConfig): Promise<Normalized> {
  const issues: Issue[] = [];
  const warnings: string[] = [];
  const config: VmConfig = { ...input, vcpus: { ...input.vcpus }, memory: { ...input.memory }, devices: [...input.devices] };

  const read = guestSettings.safeParse(config.plugin);
  if (read.ok) config.plugin = read.value;
  else issues.push(...read.issues);

  if (config.machine === undefined) config.machine = DEFAULT_MACHINE;
  else if (!isMachine(config.machine)) {
    issues.push({ path: ['machine'], message: `unknown machine ${config.machine}; this plugin has ${Object.keys(MACHINES).join(', ')}` });
  }
  if (config.vcpus.max === undefined) {
    config.vcpus.max = config.vcpus.boot;
    warnings.push(`vcpus.max is not set: the VM cannot grow beyond its ${config.vcpus.boot} boot vCPU(s)`);
  }
  if (config.memory.maxMiB === undefined) {
    config.memory.maxMiB = config.memory.sizeMiB;
    warnings.push(`memory.maxMiB is not set: the VM cannot grow beyond its ${config.memory.sizeMiB} MiB`);
  }
  if (config.memory.hugepages) {
    config.memory.hugepages = false;
    warnings.push('memory.hugepages: the simulated VMM does not back guest memory with huge pages');
  }
  if (config.console !== 'log') {
    warnings.push(`console ${config.console}: the simulated guest's console is always a log file`);
    config.console = 'log';
  }
  const files: [keyof VmConfig, string | undefined][] = [
    ['kernel', config.kernel?.path],
    ['initrd', config.initrd],
    ['disk', config.disk],
    ['firmware', config.firmware],
  ];
  for (const [field, path] of files) {
    if (path === undefined) continue;
    if (!(await exists(path))) issues.push({ path: field === 'kernel' ? ['kernel', 'path'] : [field], message: `${path} does not exist` });
    else warnings.push(`${field}: the simulated guest does not boot ${path}; it is checked, not loaded`);
  }
  const ids = new Set<string>();
  config.devices.forEach((d, i) => {
    if (ids.has(d.id)) issues.push({ path: ['devices', i, 'id'], message: `duplicate device id ${d.id}` });
    ids.add(d.id);
    issues.push(...deviceIssues(d, ['devices', i]));
  });

  if (issues.length || !read.ok) throw errors.invalidConfig(issues);
  return { config, warnings, settings: read.value };
}
