import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { PluginHost, type ShimHypervisor, type ShimVm, type VmConfigInput } from 'hvplug';
import { silentLogger } from '../clients.js';
import type { Figure } from '../figure.js';
import { notMeasured } from '../figure.js';
import { compare, measure } from '../report.js';
import { builtPlugin } from '../setup.js';

const QEMU = 'qemu-system-x86_64';
/** What the qemu plugin's guest /init prints once it runs (plugins/qemu/src/guest-init.ts). */
export const READY_MARKER = 'HVPLUG-GUEST-READY';
const POLL_MS = 5;

export function onPath(binary: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, binary);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

/** Resolves with performance.now() when `marker` appears in the file after byte `from`; polls every POLL_MS. */
export async function markerAt(path: string, marker: string, from: number, timeoutMs: number, alive: () => boolean): Promise<number> {
  const end = performance.now() + timeoutMs;
  let offset = from;
  let tail = '';
  for (;;) {
    const fh = await open(path, 'r').catch(() => undefined);
    if (fh) {
      try {
        const { size } = await fh.stat();
        if (size > offset) {
          const buf = Buffer.alloc(size - offset);
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          offset += bytesRead;
          // Kept short: the marker may straddle two reads.
          tail = (tail + buf.subarray(0, bytesRead).toString('latin1')).slice(-4096);
          if (tail.includes(marker)) return performance.now();
        }
      } finally {
        await fh.close();
      }
    }
    if (!alive()) throw new Error(`the VM ended before ${marker} appeared on ${path}; last output: ${JSON.stringify(tail.slice(-300))}`);
    if (performance.now() > end) throw new Error(`no ${marker} on ${path} within ${timeoutMs} ms; last output: ${JSON.stringify(tail.slice(-300))}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

export const sizeOf = (p: string): Promise<number> => stat(p).then((s) => s.size, () => 0);

/** CPU time (user + system, ms) a process has used so far, from /proc (10 ms ticks). */
export function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The VMM's argv as the kernel holds it: the exact command line the plugin started. */
export function argvOf(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
}

/**
 * The plugin's command line minus what makes QEMU wait for its controller: `-S` (vCPUs stopped until `cont`
 * over QMP) and `-incoming` (waits for a migration stream). Started directly, it boots at once.
 */
export function directArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '-S' || a === '-daemonize') continue;
    if (a === '-incoming') {
      i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

/** The VM config the figure boots: the plugin's default guest (its kernel and busybox initramfs), TCG. */
export function bootConfig(hv: ShimHypervisor): VmConfigInput {
  const props = (hv.info.configSchema as { properties?: Record<string, unknown> }).properties ?? {};
  return { console: 'log', plugin: 'accel' in props ? { accel: 'tcg' } : {} };
}

interface Boot {
  /** createVm() called → marker on the console. */
  ms: number;
  /** start() called → marker. */
  fromStartMs: number;
  argv: string[];
  /** QEMU's working directory: the plugin may give it relative paths (QMP socket, pidfile). */
  cwd: string;
  /** CPU time QEMU had used when the marker appeared: tells contention (same CPU, longer wall) from extra work. */
  qemuCpuMs: number;
  consolePath: string;
}

async function bootThroughHvplug(hv: ShimHypervisor, timeoutMs: number): Promise<{ boot: Boot; vm: ShimVm }> {
  const t0 = performance.now();
  const vm = await hv.createVm({ config: bootConfig(hv) });
  const console_ = await vm.console();
  if (console_.kind !== 'log') throw new Error(`the plugin's console is a ${console_.kind}, not a log file`);
  const from = await sizeOf(console_.path);
  const tStart = performance.now();
  await vm.start();
  const info = await vm.info();
  if (info.pid === undefined) throw new Error('vm/info names no VMM pid');
  const argv = argvOf(info.pid);
  const cwd = readlinkSync(`/proc/${info.pid}/cwd`);
  const t = await markerAt(console_.path, READY_MARKER, from, timeoutMs, () => existsSync(`/proc/${info.pid}`));
  const qemuCpuMs = cpuMs(info.pid);
  return { vm, boot: { ms: t - t0, fromStartMs: t - tStart, argv, cwd, qemuCpuMs, consolePath: console_.path } };
}

/** The same command line in the same directory, spawned directly: spawn → marker. QEMU is killed afterwards. */
async function bootDirectly(argv: readonly string[], cwd: string, consolePath: string, timeoutMs: number): Promise<{ ms: number; qemuCpuMs: number }> {
  const [binary, ...args] = directArgv(argv);
  if (!binary) throw new Error('empty QEMU command line');
  const from = await sizeOf(consolePath);
  const t0 = performance.now();
  const child = spawn(binary, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => void (stderr += c.toString()));
  let exited = false;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  void gone.then(() => (exited = true));
  try {
    const t = await markerAt(consolePath, READY_MARKER, from, timeoutMs, () => !exited).catch((err: Error) => {
      throw new Error(`${err.message}; QEMU stderr: ${stderr.trim().slice(-300)}`);
    });
    return { ms: t - t0, qemuCpuMs: child.pid === undefined ? Number.NaN : cpuMs(child.pid) };
  } finally {
    child.kill('SIGKILL');
    await gone;
  }
}

/** Figure 5: QEMU boot to the guest's init, through hvplug and directly. */
export const qemuBoot: Figure = {
  id: 'qemu',
  title: '5 QEMU boot',
  async run({ ws, cfg, log }) {
    const { reps, timeoutMs, enabled } = cfg.qemu;
    const method =
      `through hvplug: createVm (the qemu plugin's default guest: its kernel and busybox initramfs, TCG) → start → ` +
      `"${READY_MARKER}" on the serial console log; directly: the same QEMU command line (read from /proc/<pid>/cmdline of ` +
      `the plugin's QEMU, minus -S / -incoming, which only make QEMU wait for its controller) spawned → the same marker. ` +
      `Console polled every ${POLL_MS} ms. ${reps} reps after one warm-up boot of each, the order alternating`;
    if (!enabled) return notMeasured('skipped in --quick (a TCG boot takes seconds)', method);
    if (!onPath(QEMU)) return notMeasured(`${QEMU} is not on PATH`, method);
    const plugin = builtPlugin('qemu');
    if (!plugin) return notMeasured('the qemu plugin (plugins/qemu/dist) is not built: run npm run build', method);
    const host = new PluginHost({
      stateDir: join(ws.dir, 'qemu', 'state'),
      runtimeDir: join(ws.dir, 'qemu', 'run'),
      logger: silentLogger(),
      plugins: [{ name: 'qemu', command: plugin.executable }],
    });
    const vms: ShimVm[] = [];
    try {
      const hv = await host.hypervisor('qemu');
      type Run = { hvplug: Boot; direct: { ms: number; qemuCpuMs: number } };
      // The order alternates: even repetitions boot through hvplug then directly (with that VM's argv), odd ones
      // directly first, with the previous VM's argv, whose (stopped) VM is kept until then for its directory.
      let previous: { vm: ShimVm; boot: Boot } | undefined;
      const viaHvplug = async (): Promise<Boot> => {
        const { boot, vm } = await bootThroughHvplug(hv, timeoutMs);
        vms.push(vm);
        await vm.stop({ force: true, graceMs: 0 });
        if (previous) {
          await previous.vm.delete();
          vms.splice(vms.indexOf(previous.vm), 1);
        }
        previous = { vm, boot };
        return boot;
      };
      const direct = (boot: Boot): Promise<{ ms: number; qemuCpuMs: number }> => bootDirectly(boot.argv, boot.cwd, boot.consolePath, timeoutMs);
      const once = async (r: number): Promise<Run> => {
        if (r % 2 === 1 && previous) {
          const d = await direct(previous.boot);
          return { direct: d, hvplug: await viaHvplug() };
        }
        const h = await viaHvplug();
        return { hvplug: h, direct: await direct(h) };
      };
      log('qemu: warm-up boot');
      await once(0);
      const runs: Run[] = [];
      for (let r = 0; r < reps; r++) {
        log(`qemu: repetition ${r + 1}/${reps}`);
        runs.push(await once(r + 1));
      }
      return {
        method,
        rows: [
          compare(
            'boot to guest init',
            measure('hvplug', 'ms', runs.map((r) => r.hvplug.ms)),
            measure('QEMU directly', 'ms', runs.map((r) => r.direct.ms)),
            { on: 'ratio', op: '<=', limit: 1.02, text: '≤ 1.02× direct' },
          ),
          compare(
            "QEMU's own CPU time to guest init",
            measure('hvplug', 'ms', runs.map((r) => r.hvplug.qemuCpuMs)),
            measure('QEMU directly', 'ms', runs.map((r) => r.direct.qemuCpuMs)),
          ),
        ],
        raw: {
          config: cfg.qemu,
          unit: 'ms',
          perRep: runs.map((r) => ({
            hvplugMs: r.hvplug.ms,
            hvplugFromStartMs: r.hvplug.fromStartMs,
            hvplugQemuCpuMs: r.hvplug.qemuCpuMs,
            directMs: r.direct.ms,
            directQemuCpuMs: r.direct.qemuCpuMs,
          })),
          argv: runs[0]?.hvplug.argv,
        },
      };
    } finally {
      await Promise.all(vms.map((vm) => vm.delete().catch(() => undefined)));
      await host.close();
    }
  },
};
