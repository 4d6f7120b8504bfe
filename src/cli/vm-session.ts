import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { MethodName, VmConfig, VmEvent } from 'hvplug/protocol';
import { CancelledError, type ShimHypervisor, type ShimVm } from '../core/index.js';
import { followConsole, type ConsoleFollower } from './console-tail.js';
import type { Output } from './output.js';
import { GUEST_END_EVENTS, type EndReason, type RunEnding } from './run-ending.js';
import { describeEvent, describeInfo, describeStopping, PREFIX } from './run-format.js';
import { safeLine } from './safe-text.js';
import type { Progress } from './tty.js';

type ProgressFactory = (what: (elapsed: string) => string) => Progress;
const noProgress: ProgressFactory = () => ({ touch: () => undefined, done: () => undefined });

/** The plugin's grace before it forces a guest off (vm/stop's graceMs default): said while a stop waits it out. */
const STOP_GRACE_S = 10;

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * One VM's life under `hvplug run`: create, boot, show events and console until something ends the
 * run, then stop and delete it whatever happened, so a run never leaves a guest behind.
 */
export class VmSession {
  readonly vmId = randomUUID();
  private vm: ShimVm | undefined;
  private follower: ConsoleFollower | undefined;
  private createSent = false;
  /** The plugin's messages the host dropped during the run, as it described them. */
  private readonly dropped: string[] = [];

  constructor(
    private readonly hv: ShimHypervisor,
    private readonly out: Output,
    private readonly ending: RunEnding,
    private readonly logger: Logger,
    /** Runs once the plugin has deleted the VM (the host uses it to make sure the VM's record is gone). */
    private readonly afterDelete: (vmId: string) => Promise<void> = async () => undefined,
    /** Status lines for the long waits (boot, the guest's run, the stop's grace), on a terminal. */
    private readonly progress: ProgressFactory = noProgress,
  ) {}

  /** Resolves with why the run ended once the VM is stopped and deleted; rejects with what went wrong. */
  async run(config: VmConfig, timeoutSeconds: number | undefined): Promise<EndReason> {
    // Subscribed before vm/create: the plugin may report events before the call returns.
    const unsubscribe = this.hv.onEvent((e) => this.onEvent(e));
    let timer: NodeJS.Timeout | undefined;
    let failure: { error: unknown } | undefined;
    let waiting = this.progress((t) => `creating and booting the VM: ${t}`);
    try {
      this.createSent = true;
      this.vm = await this.hv.createVm({ vmId: this.vmId, config }, { signal: this.ending.signal });
      // Counted from the boot, so that the guest gets the time asked for whatever the plugin's start-up cost.
      if (timeoutSeconds !== undefined) timer = setTimeout(() => this.ending.end({ kind: 'timeout', seconds: timeoutSeconds }), timeoutSeconds * 1000);
      await this.boot(this.vm);
      waiting.done();
      const until = timeoutSeconds !== undefined ? `; --timeout stops it at ${timeoutSeconds} s` : '';
      waiting = this.progress((t) => `the guest runs (${t}); waiting for it to end (Ctrl-C stops it${until})`);
      this.waitForEnd(this.vm);
      await this.ending.done;
    } catch (err) {
      // A call cancelled because the run is ending is the normal way out of a boot, not a failure.
      if (!(err instanceof CancelledError && this.ending.reason)) failure = { error: err };
    } finally {
      waiting.done();
      clearTimeout(timer);
    }
    const reason = this.ending.reason;
    if (reason) this.out.record({ type: 'ending', ...reasonJson(reason) }, describeStopping(reason));
    const cleanup = await this.shutdown();
    unsubscribe();
    if (failure) throw failure.error;
    if (cleanup) throw cleanup.error;
    if (!reason) throw new Error('run ended without a reason');
    return reason;
  }

  /** The host dropped something the plugin sent (a malformed event): said at once, and kept for the verdict. */
  noteViolation(message: string): void {
    this.dropped.push(message);
    this.out.record({ type: 'violation', message }, safeLine(`${PREFIX} protocol violation: the plugin sent a message the host dropped as malformed: ${message}`));
  }

  /**
   * vm/wait as well as events: the run ends when the guest does even if its event never arrives (a
   * plugin whose event the host dropped as malformed would otherwise leave the run hanging).
   */
  private waitForEnd(vm: ShimVm): void {
    if (!this.can('vm/wait')) return;
    vm.wait({}, { signal: this.ending.signal, timeoutMs: null }).then(
      (r) => this.ending.end({ kind: 'waited', status: r.status, exitCode: r.exitCode, reason: r.reason, dropped: [...this.dropped] }),
      (err: unknown) => {
        // Cancelled when the run ends for another reason; any other failure only loses the safety net.
        if (!(err instanceof CancelledError)) this.logger.warn({ vmId: vm.id, err: errorText(err) }, 'vm/wait failed');
      },
    );
  }

  private can(method: MethodName): boolean {
    return this.hv.capabilities.methods.includes(method);
  }

  private async boot(vm: ShimVm): Promise<void> {
    const signal = this.ending.signal;
    await vm.start(
      {},
      {
        signal,
        onProgress: (p) =>
          this.out.record(
            { type: 'progress', ...p.value },
            safeLine(`${PREFIX} ${p.value.message ?? 'starting'}${p.value.percentage !== undefined ? ` (${p.value.percentage}%)` : ''}`),
          ),
      },
    );
    // What follows only informs; a plugin that fails at it still has a running guest worth showing.
    if (this.can('vm/info')) {
      try {
        const info = await vm.info({}, { signal });
        this.out.record({ type: 'vm', info }, describeInfo(info));
      } catch (err) {
        if (err instanceof CancelledError) throw err;
        this.logger.warn({ vmId: vm.id, err: errorText(err) }, 'vm/info failed');
      }
    }
    if (this.can('vm/console') && vm.config.console !== 'none') {
      try {
        const c = await vm.console({}, { signal });
        this.out.record({ type: 'console-source', ...c }, safeLine(`${PREFIX} console: ${c.kind} ${c.path}`));
        this.follower = followConsole(c, (line) => this.out.record({ type: 'console', line }, line), {
          onError: (err) => this.logger.warn({ vmId: vm.id, path: c.path, err: err.message }, 'cannot read the console'),
        });
        if (!this.follower) this.logger.warn({ vmId: vm.id, path: c.path }, 'the console is a pty; attach to it with a terminal program');
      } catch (err) {
        if (err instanceof CancelledError) throw err;
        this.logger.warn({ vmId: vm.id, err: errorText(err) }, 'vm/console failed');
      }
    }
  }

  private onEvent(e: VmEvent): void {
    if (e.vmId !== this.vmId) return;
    this.out.record({ type: 'event', event: e }, describeEvent(e));
    if (GUEST_END_EVENTS.includes(e.type)) this.ending.end({ kind: 'guest', event: e });
  }

  /** Stops, drains the console, deletes. Never throws: returns what prevented the delete, if anything. */
  private async shutdown(): Promise<{ error: unknown } | undefined> {
    const vm = this.vm;
    if (vm && (vm.status === 'running' || vm.status === 'paused') && this.can('vm/stop')) {
      try {
        await this.stop(vm);
      } catch (err) {
        // vm/delete stops the VM first, so a failed stop is not the end of the story.
        this.logger.warn({ vmId: vm.id, err: errorText(err) }, 'vm/stop failed; deleting the VM anyway');
      }
    }
    await this.follower?.stop();
    this.follower = undefined;
    if (!this.createSent || !this.can('vm/delete')) return undefined;
    try {
      // Without a ShimVm the create was cancelled or failed: the plugin may have made the VM regardless.
      if (vm) await vm.delete();
      else await this.hv.invoke('vm/delete', { vmId: this.vmId });
      await this.afterDelete(this.vmId);
      this.out.record({ type: 'deleted', vmId: this.vmId }, `${PREFIX} vm deleted`);
      return undefined;
    } catch (err) {
      return { error: err };
    }
  }

  private async stop(vm: ShimVm): Promise<void> {
    const waiting = this.progress((t) => `stopping the VM: waiting for the guest to shut down, ${t} (forced off after ${STOP_GRACE_S} s; Ctrl-C forces it now)`);
    try {
      await vm.stop({}, { signal: this.ending.forceSignal });
    } catch (err) {
      if (!(err instanceof CancelledError && this.ending.forceSignal.aborted)) throw err;
      this.out.record({ type: 'forcing', vmId: vm.id }, `${PREFIX} forcing the VM off`);
      await vm.stop({ force: true });
    } finally {
      waiting.done();
    }
  }
}

/** The reason as a JSON record's fields (errors flattened to their message). */
export function reasonJson(reason: EndReason): Record<string, unknown> {
  switch (reason.kind) {
    case 'interrupted':
      return { reason: reason.kind, signal: reason.signal };
    case 'timeout':
      return { reason: reason.kind, seconds: reason.seconds };
    case 'guest':
      return { reason: reason.kind, event: reason.event.type };
    case 'plugin-failed':
      return { reason: reason.kind, message: reason.error.message };
    case 'waited':
      return { reason: reason.kind, status: reason.status, exitCode: reason.exitCode, waitReason: reason.reason, dropped: reason.dropped };
  }
}
