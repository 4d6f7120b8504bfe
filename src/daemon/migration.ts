import { join, resolve } from 'node:path';
import { HvplugError, type MigrationDestination, type PluginHost } from '../core/index.js';
import { openDaemonHost } from './client.js';

/** A migration's destination opened for one migration, closed after it. */
export type OpenedDestination = MigrationDestination & { readonly stateDir: string; close(): Promise<void> };

/**
 * The host of another state directory on this machine, for `source` to migrate a VM to: the daemon that serves it,
 * driven through its API, or else a host of `source`'s own plugins and settings on it (runtime directory
 * `runtimeDir`, default <stateDir>/run). Only one of them may write that directory's records: with a daemon there,
 * a host of our own would find the VM's lease taken by it and be refused.
 */
export async function openDestination(source: PluginHost, stateDir: string, runtimeDir?: string): Promise<OpenedDestination> {
  const target = resolve(stateDir);
  if (target === resolve(source.stateDir)) {
    throw new HvplugError(`the destination ${target} is the VM's own state directory`, 'InvalidParams');
  }
  return (await openDaemonHost(target)) ?? source.peer({ stateDir: target, runtimeDir: runtimeDir ?? join(target, 'run') });
}
