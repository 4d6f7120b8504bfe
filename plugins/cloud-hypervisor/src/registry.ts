// The VMs of this plugin process (the SDK's registry), and what every handler needs besides: the VMM binary, the
// runtime directory and a VM's paths in it.
import { VmRegistry } from 'hvplug/plugin-sdk';
import { vmPaths, type VmPaths } from './paths.js';
import type { ChVm, VmDeps } from './vm.js';

export class Registry extends VmRegistry<ChVm> {
  /** The binary is looked up when a VMM starts, not when the plugin is built (into a startup snapshot, say). */
  constructor(private readonly binaryOf: () => string) {
    super();
  }

  get binary(): string {
    return this.binaryOf();
  }

  get runtimeDir(): string {
    return this.session.init.runtimeDir;
  }

  deps(): VmDeps {
    return { emit: this.emit, log: this.session.log };
  }

  paths(vmId: string): VmPaths {
    return vmPaths(this.runtimeDir, vmId);
  }

  /** The plugin is going away: stop watching, leave every VMM running. */
  detachAll(): void {
    for (const vm of this.values()) vm.detach();
  }
}
