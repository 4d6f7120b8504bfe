import type { VmInfo, VmStatus } from 'hvplug/protocol';
import type { ShimVm } from '../core/index.js';
import type { CliContext } from './context.js';

export const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** The guest's pid when the plugin can tell; commands only inform with it, so a failure is not fatal. */
export async function pidOf(vm: ShimVm, ctx: CliContext): Promise<number | undefined> {
  const info = await infoOf(vm, ctx);
  return info?.pid;
}

/** vm/info when the plugin offers it and the VM is in one of `statuses`; a failure is logged and answered undefined. */
export async function infoOf(vm: ShimVm, ctx: CliContext, statuses: readonly VmStatus[] = ['running', 'paused']): Promise<VmInfo | undefined> {
  if (!vm.hypervisor.capabilities.methods.includes('vm/info')) return undefined;
  if (!statuses.includes(vm.status)) return undefined;
  try {
    return await vm.info({});
  } catch (err) {
    ctx.logger.warn({ vmId: vm.id, err: errorText(err) }, 'vm/info failed');
    return undefined;
  }
}
