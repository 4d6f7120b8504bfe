// Starting a Cloud Hypervisor VMM for tests: the real binary where it can run, the contract double
// elsewhere, behind one interface so the same test body runs against either and says which.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, openSync, closeSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { once } from 'node:events';

export type VmmKind = 'real' | 'double';

export interface VmmTarget {
  readonly kind: VmmKind;
  /** argv[0] and the arguments before the VMM's own (the bundle path, for the double). */
  readonly argv: readonly string[];
  /** Why this target was chosen, for the test log. */
  readonly reason: string;
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** KVM is usable when /dev/kvm opens read-write; Cloud Hypervisor has no emulation fallback. */
export function kvmUsable(): boolean {
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
    return true;
  } catch {
    return false;
  }
}

export interface VmmChoice {
  readonly kind: VmmKind;
  /** The real binary's path, when kind is 'real'. */
  readonly binary?: string;
  /** Why this target was chosen, for the test log. */
  readonly reason: string;
}

/**
 * The real binary when `cloud-hypervisor` is on PATH and KVM works, else the double. Synchronous, so a
 * test file can decide at collection time which tests apply. HVPLUG_CH_TARGET=double|real forces one
 * (real then fails loudly if it cannot run).
 */
export function chooseTarget(): VmmChoice {
  const forced = process.env.HVPLUG_CH_TARGET;
  if (forced === 'double') return { kind: 'double', reason: 'HVPLUG_CH_TARGET=double' };
  const real = onPath('cloud-hypervisor');
  const kvm = kvmUsable();
  if (real && kvm) return { kind: 'real', binary: real, reason: `${real} with a usable /dev/kvm` };
  if (forced === 'real') throw new Error(`HVPLUG_CH_TARGET=real but ${real ? '/dev/kvm is not usable' : 'cloud-hypervisor is not on PATH'}`);
  return { kind: 'double', reason: real ? `${real} found but /dev/kvm is not usable` : 'cloud-hypervisor is not on PATH' };
}

/** The command line prefix for a choice; the double runs from its bundle under this node. */
export function targetFor(choice: VmmChoice, doubleBundle: string | undefined): VmmTarget {
  if (choice.kind === 'real' && choice.binary) return { kind: 'real', argv: [choice.binary], reason: choice.reason };
  if (!doubleBundle) throw new Error('the contract double needs its bundle');
  return { kind: 'double', argv: [process.execPath, doubleBundle], reason: choice.reason };
}

export interface VmmProcess {
  readonly target: VmmTarget;
  readonly child: ChildProcess;
  readonly socketPath: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  /** SIGTERM, then SIGKILL if it lingers. */
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly socketPath: string;
  /** Pass the socket as `--api-socket <path>` instead of `--api-socket path=<path>`. */
  readonly bareSocketArg?: boolean;
  /** Passed as --event-monitor path=<file>. */
  readonly eventFile?: string;
  readonly extraArgs?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** Extra stdio entries after stdin/stdout/stderr (fd 3 onwards), e.g. 'pipe' for --event-monitor fd=3. */
  readonly extraStdio?: readonly ('pipe' | 'ignore')[];
  readonly readyTimeoutMs?: number;
}

export async function startVmm(target: VmmTarget, opts: StartOptions): Promise<VmmProcess> {
  const args = [...target.argv.slice(1), '--api-socket', opts.bareSocketArg ? opts.socketPath : `path=${opts.socketPath}`];
  if (opts.eventFile) args.push('--event-monitor', `path=${opts.eventFile}`);
  args.push(...(opts.extraArgs ?? []));
  const child = spawn(target.argv[0]!, args, {
    stdio: ['ignore', 'ignore', 'pipe', ...(opts.extraStdio ?? [])],
    env: { ...process.env, ...opts.env },
  });
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString('utf8')));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000);
  let gone = false;
  void exited.then(() => (gone = true));
  while (!existsSync(opts.socketPath)) {
    if (gone) throw new Error(`the VMM exited before listening on ${opts.socketPath}: ${err}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the VMM did not create ${opts.socketPath} in time: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    target,
    child,
    socketPath: opts.socketPath,
    exited,
    stderr: () => err,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}
