import { accessSync, constants, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { formatIssues, toIssues, VmConfig } from 'hvplug/protocol';
import { builtinPluginPath } from '../core/index.js';
import { UsageError } from './errors.js';

export interface VmFlags {
  /** The --vm-config file. */
  config?: string;
  name?: string;
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  vcpus?: number;
  memory?: number;
  machine?: string;
}

async function readConfigFile(path: string): Promise<VmConfig> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`--vm-config: ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = VmConfig.safeParse(doc);
  if (!parsed.success) throw new UsageError(`--vm-config: ${path}: ${formatIssues(toIssues(parsed.error))}`);
  return parsed.data;
}

/**
 * The VM config `run` and `create` ask for: the --vm-config file if any, then each flag overriding its field. Checked
 * here, so a contradiction (--vcpus above the file's vcpus.max) is a usage error before any plugin starts.
 */
export async function buildVmConfig(flags: VmFlags): Promise<VmConfig> {
  const base = flags.config ? await readConfigFile(flags.config) : VmConfig.parse({});
  const config: VmConfig = { ...base };
  if (flags.kernel) config.kernel = { path: flags.kernel, cmdline: flags.cmdline ?? base.kernel?.cmdline ?? '' };
  else if (flags.cmdline !== undefined) {
    // The protocol carries the command line with the kernel; a plugin's default guest has its own.
    if (!base.kernel) throw new UsageError('--cmdline needs --kernel (or a kernel in --vm-config)');
    config.kernel = { ...base.kernel, cmdline: flags.cmdline };
  }
  if (flags.name !== undefined) config.name = flags.name;
  if (flags.initrd) config.initrd = flags.initrd;
  if (flags.machine) config.machine = flags.machine;
  if (flags.vcpus !== undefined) config.vcpus = { ...base.vcpus, boot: flags.vcpus };
  if (flags.memory !== undefined) config.memory = { ...base.memory, sizeMiB: flags.memory };
  const checked = VmConfig.safeParse(config);
  if (!checked.success) {
    throw new UsageError(`the VM config${flags.config ? ` (${flags.config} with the flags applied)` : ''} is invalid: ${formatIssues(toIssues(checked.error))}`);
  }
  return checked.data;
}

function onPath(command: string, pathEnv: string | undefined): boolean {
  return (pathEnv ?? '').split(delimiter).some((dir) => {
    if (!dir) return false;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** QEMU when it is installed and its plugin is bundled; otherwise the simulated VMM that always works. */
export function defaultPlugin(env: NodeJS.ProcessEnv = process.env): string {
  return onPath('qemu-system-x86_64', env.PATH) && existsSync(builtinPluginPath('qemu')) ? 'qemu' : 'example-proprietary';
}
