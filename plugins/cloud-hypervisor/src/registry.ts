// The VMs of this plugin process, and what every handler needs: the session (for events and the runtime
// directory), the VMM binary, and a VM by id.
import { errors, type Session } from 'hvplug/plugin-sdk';
import type { VmStatus } from 'hvplug/protocol';
import { vmPaths, type VmPaths } from './paths.js';
import type { ChVm, VmDeps } from './vm.js';

export class Registry {
  readonly vms = new Map<string, ChVm>();
  private session: Session | undefined;

  /** The binary is looked up when a VMM starts, not when the plugin is built (into a startup snapshot, say). */
  constructor(private readonly binaryOf: () => string) {}

  get binary(): string {
    return this.binaryOf();
  }

  init(session: Session): void {
    this.session = session;
  }

  private current(): Session {
    if (!this.session) throw new Error('the plugin is not initialized');
    return this.session;
  }

  get runtimeDir(): string {
    return this.current().init.runtimeDir;
  }

  deps(): VmDeps {
    const s = this.current();
    return { emit: (e) => s.emit(e), log: s.log };
  }

  paths(vmId: string): VmPaths {
    return vmPaths(this.runtimeDir, vmId);
  }

  get(vmId: string): ChVm {
    const vm = this.vms.get(vmId);
    if (!vm) throw errors.vmNotFound(vmId);
    return vm;
  }

  /** The VM's status as this process tracks it, for the SDK's early refusal; undefined for a VM it does not serve. */
  status(vmId: string): VmStatus | undefined {
    return this.vms.get(vmId)?.status;
  }

  /** The plugin is going away: stop watching, leave every VMM running. */
  detachAll(): void {
    for (const vm of this.vms.values()) vm.detach();
  }
}
