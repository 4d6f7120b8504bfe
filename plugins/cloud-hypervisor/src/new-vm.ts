// What vm/create and vm/restore share: a claimed directory, a VMM started for it, and the ChVm that
// tracks both. If anything after the start fails, the VMM is shut down and the directory removed.
import { rm, writeFile } from 'node:fs/promises';
import { errors } from 'hvplug/plugin-sdk';
import type { VmConfig } from 'hvplug/protocol';
import type { AgentVsock } from './config-map.js';
import { launchVmm } from './launcher.js';
import { socketPathProblem, vmmArgsProblem } from './paths.js';
import type { PluginOptions } from './settings.js';
import type { Registry } from './registry.js';
import { claimDir } from './vm-dir.js';
import { ChVm } from './vm.js';

export interface NewVm {
  readonly vmId: string;
  readonly config: VmConfig;
  readonly options: PluginOptions;
  readonly agent: AgentVsock | undefined;
  readonly signal: AbortSignal;
}

export function checkNew(reg: Registry, vmId: string): void {
  if (reg.has(vmId)) throw errors.alreadyExists(vmId);
  const problem = socketPathProblem(reg.paths(vmId));
  if (problem) throw errors.resourceExhausted(problem);
  const argsProblem = vmmArgsProblem(reg.paths(vmId));
  if (argsProblem) throw errors.vmmFailure(argsProblem, 'path');
}

/** The serial port's file exists from the start, so vm/console can be tailed before the guest writes. */
export async function prepareConsole(vm: ChVm): Promise<void> {
  if (vm.config.console === 'log') await writeFile(vm.paths.console, '', { mode: 0o600 });
}

/** Claims the directory (`prepare` may fill it) and starts a VMM; the VM is not registered yet. */
export async function startVmm(reg: Registry, n: NewVm, prepare?: (vm: ChVm) => Promise<void>): Promise<ChVm> {
  const paths = reg.paths(n.vmId);
  await claimDir(paths, n.vmId);
  const vm = new ChVm({
    vmId: n.vmId,
    paths,
    config: n.config,
    options: n.options,
    status: 'created',
    agent: n.agent,
    eventsOffset: 0,
    bootMemoryMiB: n.config.memory.sizeMiB,
    deps: reg.deps(),
  });
  try {
    await prepare?.(vm);
    vm.attach(await launchVmm(paths, { binary: reg.binary, readyTimeoutMs: 20_000, signal: n.signal }));
  } catch (err) {
    await rm(paths.dir, { recursive: true, force: true });
    throw err;
  }
  return vm;
}

/** Undoes startVmm after a failure: the VMM goes (without a word to the host), and its directory. */
export async function abandon(vm: ChVm): Promise<void> {
  vm.forget();
  await vm.terminate(2_000, true);
  // The VMM's exit may have started a state write into the directory (it would make rm fail with ENOTEMPTY).
  await vm.settled();
  await rm(vm.paths.dir, { recursive: true, force: true });
}
