// The VMs one plugin process serves, and the session they report through.
import type { VmStatus } from 'hvplug/protocol';
import { errors } from './errors.js';
import type { EventInput, Session } from './serve.js';

export class VmRegistry<V extends { readonly vmId: string; readonly status: VmStatus }> {
  private readonly vms = new Map<string, V>();
  private session_: Session | undefined;

  /** Give it to the definition's onInitialize. */
  init(session: Session): void {
    this.session_ = session;
  }

  get session(): Session {
    if (!this.session_) throw new Error('the plugin is not initialized');
    return this.session_;
  }

  /** Sends an event through the session; for a VM's constructor, which runs after initialize. */
  readonly emit = (event: EventInput): void => this.session.emit(event);

  get(vmId: string): V | undefined {
    return this.vms.get(vmId);
  }

  /** The VM, or VmNotFound. */
  require(vmId: string): V {
    const vm = this.vms.get(vmId);
    if (!vm) throw errors.vmNotFound(vmId);
    return vm;
  }

  has(vmId: string): boolean {
    return this.vms.has(vmId);
  }

  /** Registers a VM; AlreadyExists if the id is taken. */
  add(vm: V): V {
    if (this.vms.has(vm.vmId)) throw errors.alreadyExists(vm.vmId);
    this.vms.set(vm.vmId, vm);
    return vm;
  }

  delete(vmId: string): void {
    this.vms.delete(vmId);
  }

  values(): IterableIterator<V> {
    return this.vms.values();
  }

  /** For the definition's vmStatus: the SDK then refuses what the state machine forbids before a handler runs. */
  readonly status = (vmId: string): VmStatus | undefined => this.vms.get(vmId)?.status;
}
