import { EventEmitter, on } from 'node:events';
import {
  capabilityRefusal,
  methodDef,
  METHOD_NAMES,
  notifications,
  statusAfter,
  toIssues,
  VmEvent,
  VmResult,
  EXTENSION_TIMEOUT_MS,
  type Capabilities,
  type Device,
  type DeviceType,
  type GateContext,
  type Json,
  type MethodDef,
  type MethodName,
  type Methods,
  type NetBackend,
  type NewVmMethod,
  type ParamsInputOf,
  type Progress,
  type ResultOf,
  type VmConfig,
  type VmStatus,
} from 'hvplug/protocol';
import {
  AlreadyExistsError,
  HvplugError,
  InvalidParamsError,
  NotSupportedError,
  ProtocolError,
  ProtocolViolationError,
  VetoedError,
  VmOwnedError,
} from '../errors/index.js';
import type { ChannelCallOptions, PluginChannel } from './channel.js';
import type { InterceptedCall, Interceptor } from './interceptors.js';
import { monotonicMs, randomUuid } from '../proc/index.js';

const NONE: readonly Interceptor[] = [];

const netBackends = (devices: readonly Device[]): NetBackend[] => devices.flatMap((d) => (d.type === 'net' ? [d.backend] : []));

/**
 * `{ ...params, vmId }`, built as a lone spread and a store: V8 builds a spread followed by more members by a slow
 * path (~1 µs, against 0.1), and a null-prototype target for Object.assign is a dictionary object (slower to parse,
 * 160 bytes more). A spread takes a `__proto__` member as a member (no setter runs), and the store then finds an
 * own data property or none.
 */
function withVmId(params: Record<string, unknown>, vmId: string): Record<string, unknown> {
  const merged = { ...params };
  merged.vmId = vmId;
  return merged;
}

/** One call's options for the channel, which also keep what the VM's last event was when its answer was read. */
class Forwarded implements ChannelCallOptions {
  lastEventAtAnswer: ShimVm['lastEvent'] | null = null;
  readonly onAnswer: (() => void) | undefined;

  constructor(
    readonly timeoutMs: number | null,
    readonly signal: AbortSignal | undefined,
    vm: ShimVm | undefined,
  ) {
    this.onAnswer = vm ? () => (this.lastEventAtAnswer = vm.lastEvent) : undefined;
  }
}

const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';

export interface CallOpts {
  /** Overrides the method's default deadline; null waits without bound. */
  timeoutMs?: number | null;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
}

type Args<P> = object extends P ? [params?: P, opts?: CallOpts] : [params: P, opts?: CallOpts];
type ScopeOf<M extends MethodName> = Methods[M]['scope'];

/** ShimVm's methods: every `vm`-scoped entry of the table, vmId bound. */
export type VmApi = {
  [M in MethodName as ScopeOf<M> extends 'vm' ? Methods[M]['api'] : never]: (
    ...args: Args<Omit<ParamsInputOf<M>, 'vmId'>>
  ) => Promise<ResultOf<M>>;
};

/** ShimHypervisor's methods: `plugin`-scoped entries, and `new-vm` entries answering a ShimVm. */
export type HypervisorApi = {
  [M in MethodName as ScopeOf<M> extends 'plugin' ? Methods[M]['api'] : never]: (
    ...args: Args<ParamsInputOf<M>>
  ) => Promise<ResultOf<M>>;
} & {
  [M in MethodName as ScopeOf<M> extends 'new-vm' ? Methods[M]['api'] : never]: (
    ...args: Args<Omit<ParamsInputOf<M>, 'vmId'> & { vmId?: string }>
  ) => Promise<ShimVm>;
};

/** What the host learns about a VM as calls and events go by; the host persists it. */
export interface VmRecordUpdate {
  vmId: string;
  status: VmStatus;
  state?: Json;
  config: VmConfig;
}

export interface ShimOptions {
  interceptors?: readonly Interceptor[];
  /** Called whenever a VM's status, state or config changes (the host persists it). */
  onVmChange?: (update: VmRecordUpdate, vm: ShimVm) => void | Promise<void>;
  /**
   * Resolves once every change reported for the VM so far is written (an event's, before its call's answer);
   * nothing when nothing is pending.
   */
  onVmSettled?: (vmId: string) => void | Promise<void>;
  /**
   * Awaited before a VM-creating call is sent, so the host's record exists before the VM does. A rejection
   * (AlreadyExists) stops the call before it is sent.
   */
  onVmCreating?: (update: VmRecordUpdate, method: NewVmMethod) => Promise<void>;
  /** Turns the caller's raw config of a vm/create or vm/restore into the one validated, recorded and sent. */
  withDefaults?: (config: unknown) => unknown;
  /**
   * Awaited before a `delete` call (vm/delete) is sent, so that the VM's record says it is being deleted before the
   * plugin may delete it. A rejection stops the call before it is sent.
   */
  onVmDeleting?: (vmId: string, method: MethodName) => void | Promise<void>;
  /** Awaited before a `delete` call that failed rethrows (the host clears the record's mark when the VM stays). */
  onDeleteFailed?: (vmId: string, err: unknown) => void | Promise<void>;
  /** The VM was deleted, or its creation failed (`failure`: why, for a creating call that failed). */
  onVmGone?: (vmId: string, failure?: unknown, gone?: { name?: string }) => void | Promise<void>;
  /**
   * A `hand-off` call (vm/migrate) succeeded: the VM runs elsewhere now. Awaited before the call returns; the host
   * moves the record there (PluginHost.migrate) or, for a raw call, drops it.
   */
  onVmHandedOff?: (vmId: string) => void | Promise<void>;
  /**
   * A `create` call (vm/create) answered and what it answered is tracked: awaited before the call returns, ahead of
   * the interceptors' `after` (the host drops the record's pending mark).
   */
  onCreateAnswered?: (vmId: string) => void | Promise<void>;
  /** Called when a plugin sends something the table does not allow (a malformed event). */
  onViolation?: (err: HvplugError) => void;
  /**
   * Called as every method call ends, however it ends (`error` undefined for an answer): the host's metrics. Must
   * not throw; it is not awaited.
   */
  onCallEnd?: (method: MethodName, seconds: number, error: unknown) => void;
}

interface VmEvents {
  event: [VmEvent];
}

/** A VM driven through the shim. Its methods are generated from the method table. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging -- methods are installed from the table below
export class ShimVm extends EventEmitter<VmEvents> {
  status: VmStatus;
  state: Json | undefined;
  /** Device id → type, to decide cold/hot plug and hot-unplug capability locally. */
  readonly deviceTypes = new Map<string, DeviceType>();
  /** Set when another live host drives this VM (who, for the error): this shim may look, not change. */
  ownedBy: string | undefined;
  /**
   * The last event applied, by the process (pid) that sent it: an older one from the same process is stale. A new
   * object per event, so that track can tell whether an event came after a call's answer.
   */
  lastEvent: { origin: number; seq: number } | undefined;

  constructor(
    readonly id: string,
    readonly hypervisor: ShimHypervisor,
    public config: VmConfig,
    status: VmStatus,
  ) {
    super();
    this.status = status;
    for (const d of config.devices) this.deviceTypes.set(d.id, d.type);
  }

  /** Events of this VM as an async iterator; ends when the signal aborts. */
  events(signal?: AbortSignal): AsyncIterableIterator<VmEvent> {
    const it = on(this, 'event', { signal }) as AsyncIterableIterator<[VmEvent]>;
    return (async function* () {
      try {
        for await (const [e] of it) yield e;
      } catch (err) {
        if ((err as Error).name !== 'AbortError') throw err;
      }
    })();
  }

  /** Resolves with the first event of one of the given types. */
  waitFor(types: readonly VmEvent['type'][], signal?: AbortSignal): Promise<VmEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (e: VmEvent): void => {
        if (!types.includes(e.type)) return;
        this.off('event', onEvent);
        resolve(e);
      };
      this.on('event', onEvent);
      signal?.addEventListener('abort', () => {
        this.off('event', onEvent);
        reject(signal.reason);
      });
    });
  }
}
// The typed face of the methods installed on the prototypes from the table (bottom of this file).
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging, @typescript-eslint/no-empty-object-type
export interface ShimVm extends VmApi {}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging, @typescript-eslint/no-empty-object-type
export interface ShimHypervisor extends HypervisorApi {}

/**
 * The forwarding hypervisor: every call is intercepted → validated → capability-checked → sent, and its
 * result validated, all from the method table. Nothing here is written per method.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging -- methods are installed from the table below
export class ShimHypervisor {
  private readonly vms = new Map<string, ShimVm>();
  private readonly comingUp = new Set<string>();
  private readonly progress = new Map<string, (p: Progress) => void>();
  private readonly eventListeners = new Set<(e: VmEvent) => void>();
  private readonly detach: () => void;

  constructor(
    readonly channel: PluginChannel,
    private readonly opts: ShimOptions = {},
  ) {
    this.detach = channel.onNotification((method, params, origin) => this.onNotification(method, params, origin));
  }

  get capabilities(): Capabilities {
    return this.channel.info.capabilities;
  }

  get info(): PluginChannel['info'] {
    return this.channel.info;
  }

  /** A VM this shim knows (created, restored or recovered through it). */
  vm(vmId: string): ShimVm | undefined {
    return this.vms.get(vmId);
  }

  listVms(): ShimVm[] {
    return [...this.vms.values()];
  }

  /** Whether the call that creates or restores this VM is still under way. */
  isComingUp(vmId: string): boolean {
    return this.comingUp.has(vmId);
  }

  /** Every VM event this plugin sends. */
  onEvent(listener: (e: VmEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Calls a vendor extension `x-<vendor>/<name>`; refused locally unless the plugin declared it. */
  async extension(name: string, params: Record<string, Json> = {}, opts: CallOpts = {}): Promise<unknown> {
    if (!Object.hasOwn(this.capabilities.extensions, name)) {
      throw new NotSupportedError(name, 'the plugin declares no such extension', true);
    }
    return this.channel.call(name, params, { timeoutMs: opts.timeoutMs ?? EXTENSION_TIMEOUT_MS, signal: opts.signal });
  }

  /** Stops routing events to this shim. */
  dispose(): void {
    this.detach();
  }

  /** Registers a VM whose record the host already holds (host restart, plugin restart). */
  adopt(vmId: string, config: VmConfig, status: VmStatus, state?: Json): ShimVm {
    const vm = this.vms.get(vmId) ?? new ShimVm(vmId, this, config, status);
    vm.status = status;
    vm.state = state;
    this.vms.set(vmId, vm);
    return vm;
  }

  forget(vmId: string): void {
    this.vms.get(vmId)?.removeAllListeners();
    this.vms.delete(vmId);
  }

  /** The one path every method takes. */
  invoke<M extends MethodName>(method: M, rawParams: Record<string, unknown>, opts: CallOpts = {}, vm?: ShimVm): Promise<ResultOf<M>> {
    return this.run(method, rawParams, opts, vm, this.opts.onCallEnd ? monotonicMs() : 0);
  }

  /**
   * `t0`: when the call began, for onCallEnd, which is told here rather than from a `.then` on this promise: one
   * promise and two closures less per call. Kept to few locals, the rare steps (interceptors, progress) in helpers:
   * an async function's frame, every local of it, is allocated anew per call.
   */
  private async run<M extends MethodName>(method: M, rawParams: Record<string, unknown>, opts: CallOpts, vm: ShimVm | undefined, t0: number): Promise<ResultOf<M>> {
    let value: ResultOf<M>;
    try {
      if (vm?.ownedBy !== undefined) throw new VmOwnedError(vm.id, vm.ownedBy);
      const interceptors = this.opts.interceptors ?? NONE;
      // Made only for interceptors to see: without any, a call is one object lighter.
      const call = interceptors.length === 0 ? undefined : await this.before(method, rawParams, vm, interceptors);
      const spec = methodDef(method);
      const params = this.validated(spec, method, call ? call.params : rawParams, vm);
      const sent = new Forwarded(opts.timeoutMs === undefined ? spec.timeoutMs : opts.timeoutMs, opts.signal, vm);
      const raw = spec.record === 'delete' ? await this.takeDown(spec, method, params, sent, opts, vm) : await this.send(spec, method, params, sent, opts);
      const result = spec.result.safeParse(raw);
      if (!result.success) throw new ProtocolViolationError(method, toIssues(result.error));
      value = result.data as ResultOf<M>;
      // A call returns once what it changed is recorded, so a host crash right after it loses nothing.
      // Awaited only when there is something to wait for: most calls change nothing, and each await is a turn.
      const tracked = this.track(spec, params, value, vm, sent.lastEventAtAnswer);
      if (tracked) await tracked;
      const answered = spec.record === 'create' ? this.opts.onCreateAnswered?.(vm?.id ?? (params.vmId as string)) : undefined;
      if (answered) await answered;
      if (call) value = (await this.after(interceptors, call, value)) as ResultOf<M>;
    } catch (err) {
      this.opts.onCallEnd?.(method, (monotonicMs() - t0) / 1000, err);
      throw err;
    }
    this.opts.onCallEnd?.(method, (monotonicMs() - t0) / 1000, undefined);
    return value;
  }

  /** The interceptors' `before`, in order: the call as they leave it. */
  private async before(method: MethodName, params: Record<string, unknown>, vm: ShimVm | undefined, interceptors: readonly Interceptor[]): Promise<InterceptedCall> {
    const call: InterceptedCall = { method, vmId: vm?.id ?? (params.vmId as string | undefined), params };
    for (const i of interceptors) {
      if (!i.before) continue;
      try {
        const replaced = await i.before(call);
        if (replaced) call.params = replaced;
      } catch (err) {
        throw err instanceof HvplugError ? err : new VetoedError(method, (err as Error).message ?? String(err));
      }
    }
    return call;
  }

  /** The interceptors' `after`, in order: the result as they leave it. */
  private async after(interceptors: readonly Interceptor[], call: InterceptedCall, result: unknown): Promise<unknown> {
    let value = result;
    for (const i of interceptors) {
      if (!i.after) continue;
      const after = i.after(call, value);
      value = (isThenable(after) ? await after : after) ?? value;
    }
    return value;
  }

  /** The params as sent: the caller's, with the VM's id, parsed by the method's schema and let through by the gate. */
  private validated(spec: MethodDef, method: MethodName, given: Record<string, unknown>, vm: ShimVm | undefined): Record<string, unknown> {
    const parsed = spec.params.safeParse(vm ? withVmId(given, vm.id) : given);
    if (!parsed.success) throw new InvalidParamsError(method, toIssues(parsed.error));
    const params = parsed.data as Record<string, unknown>;
    const refusal = capabilityRefusal(method, this.capabilities, this.gateContext(spec, params, vm));
    if (refusal) throw new NotSupportedError(method, refusal, true);
    return params;
  }

  private send(spec: MethodDef, method: MethodName, params: Record<string, unknown>, sent: Forwarded, opts: CallOpts): Promise<unknown> {
    return opts.onProgress && spec.progress ? this.withProgress(method, params, sent, opts.onProgress) : this.channel.call(method, params, sent);
  }

  /**
   * A `delete` call, sent between the host's marking of the VM's record (onVmDeleting) and, should it fail, the host's
   * look at why (onDeleteFailed).
   */
  private async takeDown(spec: MethodDef, method: MethodName, params: Record<string, unknown>, sent: Forwarded, opts: CallOpts, vm: ShimVm | undefined): Promise<unknown> {
    const vmId = vm?.id ?? (params.vmId as string);
    const marked = this.opts.onVmDeleting?.(vmId, method);
    if (marked) await marked;
    try {
      return await this.send(spec, method, params, sent, opts);
    } catch (err) {
      const looked = this.opts.onDeleteFailed?.(vmId, err);
      if (looked) await looked;
      throw err;
    }
  }

  /** A call whose progress the caller follows: its token routes the plugin's $/progress while it runs. */
  private async withProgress(method: MethodName, params: Record<string, unknown>, sent: Forwarded, onProgress: (p: Progress) => void): Promise<unknown> {
    const token = randomUuid();
    this.progress.set(token, onProgress);
    params.progressToken = token;
    try {
      return await this.channel.call(method, params, sent);
    } finally {
      this.progress.delete(token);
    }
  }

  private gateContext(spec: MethodDef, params: Record<string, unknown>, vm?: ShimVm): GateContext {
    const ctx: GateContext = { vmStatus: vm?.status, machine: vm?.config.machine, protocolVersion: this.info.protocolVersion };
    if (spec.devices === 'adds') {
      const device = params.device as Device;
      ctx.deviceType = device.type;
      ctx.netBackends = netBackends([device]);
    }
    if (spec.devices === 'removes') ctx.deviceType = vm?.deviceTypes.get(params.deviceId as string);
    const config = params.config as VmConfig | undefined;
    if (config && spec.scope === 'new-vm') {
      ctx.machine = config.machine;
      if (spec.devices === 'attaches') {
        ctx.coldDevices = config.devices.map((d) => d.type);
        ctx.netBackends = netBackends(config.devices);
      }
    }
    return ctx;
  }

  /**
   * Keeps the VM's status, opaque state, devices and config in step with what the plugin answered. Returns what the
   * call must wait for (the record written), or nothing when there is nothing to wait for.
   */
  private track(
    spec: MethodDef,
    params: Record<string, unknown>,
    result: unknown,
    vm?: ShimVm,
    lastEventAtAnswer: ShimVm['lastEvent'] | null = null,
  ): void | Promise<void> {
    const target = vm ?? this.vms.get(params.vmId as string);
    if (!target) return;
    const r = result as { status?: VmStatus; state?: Json };
    // Only a change is reported: the host persists each report (a file write, fsync'd unless only the status moved), and read-only calls
    // (vm/check, vm/info, vm/stats...) would otherwise rewrite the record on every call.
    const before = target.status;
    // An event read after the answer is newer than the status the answer carries: it stands.
    const overtaken = lastEventAtAnswer !== null && target.lastEvent !== lastEventAtAnswer;
    if (!overtaken && r.status !== undefined && VmResult.shape.status.safeParse(r.status).success) target.status = r.status;
    // Compared as JSON: a re-attach (vm/recover after a plugin restart) usually hands back the same config and state.
    const newVm = spec.scope === 'new-vm';
    let dirty =
      target.status !== before ||
      (newVm && JSON.stringify(params.config) !== JSON.stringify(target.config)) ||
      spec.devices === 'adds' ||
      spec.devices === 'removes';
    if (r.state !== undefined) {
      if (JSON.stringify(r.state) !== JSON.stringify(target.state)) dirty = true;
      target.state = r.state;
    }
    if (spec.devices === 'adds') {
      const device = params.device as VmConfig['devices'][number];
      target.deviceTypes.set(device.id, device.type);
      target.config = { ...target.config, devices: [...target.config.devices.filter((d) => d.id !== device.id), device] };
    }
    if (spec.devices === 'removes') {
      target.deviceTypes.delete(params.deviceId as string);
      target.config = { ...target.config, devices: target.config.devices.filter((d) => d.id !== params.deviceId) };
    }
    if (newVm) target.config = params.config as VmConfig;
    if (spec.record === 'delete') {
      this.forget(target.id);
      return this.opts.onVmGone?.(target.id, undefined, { name: target.config.name });
    }
    if (spec.record === 'hand-off') {
      this.forget(target.id);
      return this.opts.onVmHandedOff?.(target.id);
    }
    // Events the call caused may have changed the VM before its answer came; the call returns when that is written too.
    if (dirty) return this.changed(target);
    return this.opts.onVmSettled?.(target.id);
  }

  private async changed(vm: ShimVm): Promise<void> {
    await this.opts.onVmChange?.({ vmId: vm.id, status: vm.status, state: vm.state, config: vm.config }, vm);
  }

  /** Creates the VM object before the call so that events arriving during it are not lost. */
  async bringUp(method: NewVmMethod, params: Record<string, unknown>, opts?: CallOpts): Promise<ShimVm> {
    return (await this.bringUpWith(method, params, opts)).vm;
  }

  /** bringUp, with the plugin's answer too (vm/receiveMigration's uri is in it). */
  async bringUpWith<M extends NewVmMethod>(method: M, params: Record<string, unknown>, opts?: CallOpts): Promise<{ vm: ShimVm; answer: ResultOf<M> }> {
    const vmId = (params.vmId as string | undefined) ?? randomUuid();
    // A re-attach (vm/recover) hands back a config recorded already merged.
    const reattach = methodDef(method).record === 'reattach';
    if (!reattach && this.opts.withDefaults) params = { ...params, config: this.opts.withDefaults(params.config) };
    const sent = withVmId(params, vmId);
    const parsed = methodDef(method).params.safeParse(sent);
    if (!parsed.success) throw new InvalidParamsError(method, toIssues(parsed.error));
    const config = (parsed.data as { config: VmConfig }).config;
    const existed = this.vms.has(vmId);
    // Only a re-attach (vm/recover) may name a VM this shim knows; a create or restore would overwrite it.
    if (existed && !reattach) throw new AlreadyExistsError(`VM ${vmId} already exists`, vmId);
    const vm = this.vms.get(vmId) ?? new ShimVm(vmId, this, config, 'created');
    this.vms.set(vmId, vm);
    if (!existed) this.comingUp.add(vmId);
    let recorded = false;
    let answer: ResultOf<M>;
    try {
      if (!existed) await this.opts.onVmCreating?.({ vmId, status: vm.status, state: vm.state, config }, method);
      recorded = true;
      answer = await this.invoke(method, sent, opts, vm);
    } catch (err) {
      if (!existed) {
        this.vms.delete(vmId);
        // A failed recover says nothing about the VM's existence: its record stays for the caller to judge.
        // A refused claim wrote no record: the one there belongs to another VM.
        if (!reattach && recorded) await this.opts.onVmGone?.(vmId, err);
      }
      throw err;
    } finally {
      if (!existed) this.comingUp.delete(vmId);
    }
    return { vm, answer };
  }

  private onNotification(method: string, params: unknown, origin: number): void {
    if (method === 'vm/event') {
      const parsed = VmEvent.safeParse(params);
      if (!parsed.success) {
        this.opts.onViolation?.(new ProtocolViolationError('vm/event', toIssues(parsed.error)));
        return;
      }
      const event = parsed.data;
      const vm = this.vms.get(event.vmId);
      if (!vm) {
        // Not one of this plugin's VMs (every VM it creates or re-attaches is known before its call is sent): maybe
        // another plugin's, whose listeners must not hear of it from here.
        this.opts.onViolation?.(new ProtocolError(`event for a VM it does not have dropped: ${event.type} for VM ${event.vmId}`));
        return;
      }
      // seq orders one process's events per VM; a restarted plugin numbers afresh.
      const last = vm.lastEvent;
      if (last && last.origin === origin && event.seq <= last.seq) {
        this.opts.onViolation?.(new ProtocolError(`stale event for VM ${event.vmId} dropped: ${event.type} seq ${event.seq}, after seq ${last.seq}`));
        return;
      }
      vm.lastEvent = { origin, seq: event.seq };
      this.deliver(event);
    } else if (method === '$/progress') {
      const parsed = notifications['$/progress'].params.safeParse(params);
      if (parsed.success) this.progress.get(String(parsed.data.token))?.(parsed.data);
    }
  }

  /** Routes an event to its VM and listeners; the host also uses it for events of its own (lost, recovered). */
  deliver(event: VmEvent): void {
    const vm = this.vms.get(event.vmId);
    if (vm) {
      // As in track: only a change is persisted. An event often confirms what the call's answer already set
      // (running after vm/start, the host's own recovered after vm/recover), and each report is a file write.
      const before = vm.status;
      const next = statusAfter(event);
      if (next) vm.status = next;
      // A state event that repeats the state it has (a plugin that sends one after each call) changes nothing.
      let newState = false;
      if (event.type === 'state') {
        newState = JSON.stringify(event.state) !== JSON.stringify(vm.state);
        vm.state = event.state;
      }
      // A device can go without a device/remove answer: the guest ejected it after the caller stopped waiting.
      const removed = event.type === 'device-removed' && vm.config.devices.some((d) => d.id === event.deviceId);
      if (removed) {
        vm.deviceTypes.delete(event.deviceId);
        vm.config = { ...vm.config, devices: vm.config.devices.filter((d) => d.id !== event.deviceId) };
      }
      // Nobody waits on an event's write: the host reports and retries one that fails.
      if (vm.status !== before || newState || removed) this.changed(vm).catch(() => undefined);
      vm.emit('event', event);
    }
    for (const l of this.eventListeners) l(event);
  }
}

for (const name of METHOD_NAMES) {
  const spec = methodDef(name);
  if (spec.scope === 'vm') {
    Object.defineProperty(ShimVm.prototype, spec.api, {
      value: function (this: ShimVm, params: Record<string, unknown> = {}, opts?: CallOpts) {
        return this.hypervisor.invoke(name, params, opts, this);
      },
    });
  } else if (spec.scope === 'plugin') {
    Object.defineProperty(ShimHypervisor.prototype, spec.api, {
      value: function (this: ShimHypervisor, params: Record<string, unknown> = {}, opts?: CallOpts) {
        return this.invoke(name, params, opts);
      },
    });
  } else if (spec.scope === 'new-vm') {
    Object.defineProperty(ShimHypervisor.prototype, spec.api, {
      value: function (this: ShimHypervisor, params: Record<string, unknown> = {}, opts?: CallOpts) {
        return this.bringUp(name as NewVmMethod, params, opts);
      },
    });
  }
}
