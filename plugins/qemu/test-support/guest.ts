// Test helpers: boot the host's Debian kernel with hvplug's initramfs under TCG through startQemu,
// remember every QEMU started so afterEach can kill it, and wait on the guest console.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readHostTscKhz } from '../src/accel.js';
import { type ColdPlug, DEFAULT_QEMU_BINARY, type MachineType, buildQemuArgs, defaultKernelCmdline } from '../src/cmdline.js';
import { type Initramfs, buildInitramfs, findDefaultKernel, writeGuestInitrd } from '../src/initramfs.js';
import { type QemuInstance, killProcessGroup, startQemu } from '../src/process.js';
import { type WaitForConsoleOptions, consoleSize, waitForConsole } from './console-log.js';

export const QEMU_PACKAGES = 'qemu-system-x86 qemu-utils linux-image-amd64 busybox-static';

/** The QEMU binary on PATH, or undefined. */
export function findQemu(): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${DEFAULT_QEMU_BINARY}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

export const SKIP_MESSAGE = `${DEFAULT_QEMU_BINARY} is not installed: apt-get install ${QEMU_PACKAGES}`;

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
/** Shared by all test files so the initramfs is built once per machine, not per test. */
export const TEST_CACHE_DIR = join(repoRoot, '.hvplug-cache', 'qemu-initramfs');

let initramfs: Promise<Initramfs> | undefined;
export function testInitramfs(): Promise<Initramfs> {
  initramfs ??= buildInitramfs({ cacheDir: TEST_CACHE_DIR });
  return initramfs;
}

export interface TestGuestOptions {
  /** Shell script the guest runs after the ready marker; the guest powers off when it ends. */
  readonly script: string;
  readonly machine?: MachineType;
  readonly vcpus?: { readonly boot: number; readonly max?: number };
  readonly memory?: { readonly sizeMiB: number; readonly maxMiB?: number; readonly slots?: number };
  readonly paused?: boolean;
  readonly incoming?: 'defer';
  readonly coldPlug?: ColdPlug;
  /** Reuse this runtime directory (and its console log, initrd) instead of a fresh one. */
  readonly runDir?: string;
  readonly hotplugRootPorts?: number;
}

export interface TestGuest {
  readonly vm: QemuInstance;
  readonly runDir: string;
  readonly consoleLog: string;
  readonly args: readonly string[];
  waitConsole(pattern: RegExp, opts?: WaitForConsoleOptions): Promise<{ match: RegExpMatchArray; text: string }>;
  consoleOffset(): Promise<number>;
}

const started: QemuInstance[] = [];
const dirs: string[] = [];

export async function newRunDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'hvplug-qemu-'));
  dirs.push(d);
  return d;
}

export async function bootTestGuest(o: TestGuestOptions): Promise<TestGuest> {
  const kernel = await findDefaultKernel();
  const base = await testInitramfs();
  const runDir = o.runDir ?? (await newRunDir());
  const initrd = await writeGuestInitrd(base.path, join(runDir, 'initrd.img'), o.script);
  const machine = o.machine ?? 'q35';
  const consoleLog = join(runDir, 'console.log');
  const args = buildQemuArgs({
    name: 'hvplug-test',
    machine,
    accel: 'tcg',
    kernel: kernel.path,
    initrd,
    cmdline: defaultKernelCmdline(machine, { tscKhz: await readHostTscKhz() }),
    vcpus: o.vcpus ?? { boot: 1 },
    memory: o.memory ?? { sizeMiB: 256 },
    qmpSocket: 'qmp.sock',
    console: { kind: 'log', logFile: consoleLog },
    pidfile: 'qemu.pid',
    paused: o.paused,
    incoming: o.incoming,
    coldPlug: o.coldPlug,
    hotplugRootPorts: o.hotplugRootPorts,
  });
  const vm = await startQemu({ args, runDir, qmpSocket: 'qmp.sock' });
  started.push(vm);
  return {
    vm,
    runDir,
    consoleLog,
    args,
    waitConsole: (pattern, opts) => waitForConsole(consoleLog, pattern, { timeoutMs: 60_000, ...opts }),
    consoleOffset: () => consoleSize(consoleLog),
  };
}

/** Remembers a QEMU started outside bootTestGuest so killAllStarted covers it. */
export function track(vm: QemuInstance): void {
  started.push(vm);
}

/** For afterEach: every QEMU a test started is gone afterwards, whatever the test did. */
export async function killAllStarted(): Promise<void> {
  const vms = started.splice(0);
  await Promise.all(
    vms.map(async (vm) => {
      vm.detach();
      await killProcessGroup(vm.pid, { graceMs: 500 });
    }),
  );
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}
