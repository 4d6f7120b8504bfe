import * as z from 'zod';
import { PluginSpec } from '../core/index.js';
import { existingFile, intValue, nonEmpty, type FlagTable } from './args.js';
import { NAME_PATTERN } from './vm-ref.js';

/** The flags that describe a new VM, shared by run and create. */
export const VM_FLAGS = {
  plugin: { type: 'string', value: '<name>', help: 'plugin to use (default: qemu when qemu-system-x86_64 and its plugin are installed, else example-proprietary)' },
  name: { type: 'string', value: '<name>', help: 'a name for the VM, unique in the state directory; other commands accept it in place of the id' },
  kernel: { type: 'string', value: '<path>', help: 'guest kernel (default: the plugin\'s own guest)' },
  initrd: { type: 'string', value: '<path>', help: 'initial ramdisk' },
  cmdline: { type: 'string', value: '<string>', help: 'kernel command line (with --kernel or a kernel in --vm-config)' },
  vcpus: { type: 'string', value: '<n>', help: 'vCPUs at boot, 1-512' },
  memory: { type: 'string', value: '<MiB>', help: 'memory size in MiB, at least 16' },
  machine: { type: 'string', value: '<type>', help: 'plugin-specific machine type, e.g. q35 or microvm' },
  'vm-config': { type: 'string', value: '<file>', help: 'VM config as JSON (the protocol\'s VmConfig); the flags above override its fields' },
} as const satisfies FlagTable;

export const VmFlagOptions = {
  plugin: z.optional(PluginSpec.shape.name),
  name: z.string().regex(NAME_PATTERN, { error: (i) => `expected 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit, got "${String(i.input)}"` }).optional(),
  kernel: z.optional(existingFile()),
  initrd: z.optional(existingFile()),
  cmdline: z.string().optional(),
  vcpus: z.optional(intValue(1, 512)),
  memory: z.optional(intValue(16, 16 * 1024 * 1024)),
  machine: z.optional(nonEmpty('a machine type')),
  'vm-config': z.optional(existingFile()),
};

/**
 * After run or create, --config would read as the VM's config; it is the plugins config, which goes
 * before the command. Said rather than guessed.
 */
export const MISPLACED_CONFIG = {
  config: '--config after the command is not the VM config: use --vm-config <vm.json> for the VM, and put the plugins config before the command (hvplug --config plugins.toml <command> ...)',
} as const;
