import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PluginHost, type ShimVm } from 'hvplug';
import { silentLogger } from '../clients.js';
import { ownCpuUs, threadsCpuUs } from '../cpu.js';
import { alternate } from '../drivers.js';
import type { Figure } from '../figure.js';
import { notMeasured } from '../figure.js';
import { compare, measure, ratioText } from '../report.js';
import { openQmp, type RawQmp } from '../qmp.js';
import { builtPlugin } from '../setup.js';
import { median } from '../stats.js';
import { argvOf, bootConfig, directArgv, markerAt, onPath, READY_MARKER, sizeOf } from './qemu.js';

const QEMU = 'qemu-system-x86_64';
export const IDLE_SCRIPT = 'while :; do sleep 3600; done';

/** Cycles of each path timed before its warm-up, for the row of what a caller's first cycles cost. */
const FIRST_CYCLES = 25;

/** ms for `cycles` pause + resume cycles, each timed alone; the median cycle. */
async function cycles(n: number, one: () => Promise<void>): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await one();
    ms.push(performance.now() - t);
  }
  return median(ms);
}

/** One cycle: `a`, then `b` once `a` has answered. */
const inTurn =
  (a: () => Promise<unknown>, b: () => Promise<unknown>) =>
  async (): Promise<void> => {
    await a();
    await b();
  };

/** The parent of a process, from /proc: the plugin that started QEMU. */
function parentOf(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]);
}

/** CPU ms each process used over the timed segments (every thread), and the cycles they ran: where a cycle's time goes. */
interface CpuTally {
  cycles: number;
  ms: Record<string, number>;
}

async function tallied(tally: CpuTally, pids: Record<string, number>, n: number, seg: () => Promise<number>): Promise<number> {
  const self0 = ownCpuUs();
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, threadsCpuUs(pid)]));
  const ms = await seg();
  tally.cycles += n;
  tally.ms.bench = (tally.ms.bench ?? 0) + (ownCpuUs() - self0) / 1000;
  for (const [k, pid] of Object.entries(pids)) tally.ms[k] = (tally.ms[k] ?? 0) + (threadsCpuUs(pid) - (before[k] ?? 0)) / 1000;
  return ms;
}

const perCycle = (t: CpuTally): Record<string, number> =>
  Object.fromEntries(Object.entries(t.ms).map(([k, v]) => [k, Math.round((v / t.cycles) * 1000) / 1000]));

interface Relay {
  socket: string;
  stop(): Promise<void>;
}

/** The qmp-relay helper listening on `socket` for QEMU's QMP socket `qmpSocket`: resolved once it listens. */
async function startRelay(bundle: string, socket: string, qmpSocket: string, timeoutMs: number): Promise<Relay> {
  const child = spawn(process.execPath, [bundle, socket, qmpSocket], { stdio: ['pipe', 'pipe', 'inherit'] });
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await gone;
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`the QMP relay did not listen within ${timeoutMs} ms`)), timeoutMs);
      child.stdout?.once('data', () => (clearTimeout(t), resolve()));
      void gone.then(() => (clearTimeout(t), reject(new Error('the QMP relay exited before it listened'))));
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { socket, stop };
}

/** Figure 5b: pause + resume of a running QEMU guest through the library vs raw QMP over one connection. */
export const qemuPause: Figure = {
  id: 'qemu-pause',
  title: '5b QEMU pause + resume',
  async run({ ws, cfg, log }) {
    const { reps, timeoutMs, enabled } = cfg.qemu;
    const { warmup, cycles: perRep } = cfg.qemuPause;
    const method =
      `a booted guest (the qemu plugin's default kernel and busybox initramfs running "${IDLE_SCRIPT}", TCG, "${READY_MARKER}" seen) paused and ` +
      `resumed ${perRep} times per repetition after ${warmup} warm-up cycles per path (as a long-lived embedder's code is: the ` +
      `first cycles after boot run code V8 has not optimised yet, reported apart), the median cycle counted. hvplug: vm.pause() then vm.resume() on a PluginHost in ` +
      `the bench process (the plugin's QMP stop/cont, its events, the host's record write). Raw QMP: a second QEMU with the ` +
      `same command line (its own QMP socket and console), stop then cont over one open QMP connection, each answer ` +
      `awaited. Info rows: the floor (two QMP queries that change nothing a cycle, vm.check() through hvplug against ` +
      `query-status raw, measured the same way); the floor of any out-of-process controller (raw stop then cont sent ` +
      `through a node process that relays the bytes unread to a second QMP monitor of the same QEMU, connected for its ` +
      `own segments only); and the first cycles after boot. ${reps} reps of the five paths, their order ` +
      `rotating, a GC before each segment`;
    if (!enabled) return notMeasured('skipped in --quick (a TCG boot takes seconds)', method);
    if (!onPath(QEMU)) return notMeasured(`${QEMU} is not on PATH`, method);
    const plugin = builtPlugin('qemu');
    if (!plugin) return notMeasured('the qemu plugin (plugins/qemu/dist) is not built: run npm run build', method);
    const host = new PluginHost({
      stateDir: join(ws.dir, 'qemu-pause', 'state'),
      runtimeDir: join(ws.dir, 'qemu-pause', 'run'),
      logger: silentLogger(),
      plugins: [{ name: 'qemu', command: plugin.executable }],
    });
    let vm: ShimVm | undefined;
    let direct: ChildProcess | undefined;
    let qmp: RawQmp | undefined;
    let relay: Relay | undefined;
    try {
      const hv = await host.hypervisor('qemu');
      // A guest that idles (sleep) until killed: the default one powers off after a few seconds.
      const base = bootConfig(hv);
      vm = await hv.createVm({ config: { ...base, plugin: { ...base.plugin, guestScript: IDLE_SCRIPT } } });
      const console_ = await vm.console();
      if (console_.kind !== 'log') throw new Error(`the plugin's console is a ${console_.kind}, not a log file`);
      await vm.start();
      const info = await vm.info();
      if (info.pid === undefined) throw new Error('vm/info names no VMM pid');
      const pid = info.pid;
      const argv = argvOf(pid);
      const runDir = readlinkSync(`/proc/${pid}/cwd`);
      log('qemu-pause: booting the guest through hvplug');
      await markerAt(console_.path, READY_MARKER, 0, timeoutMs, () => existsSync(`/proc/${pid}`));

      // The baseline's QEMU: the same command line in a directory of its own, so that its QMP socket, pidfile and
      // console are its own (relative paths land there; the console's absolute path is rewritten).
      const dir = join(ws.dir, 'qemu-pause', 'direct');
      await mkdir(dir, { recursive: true });
      const directConsole = join(dir, 'console.log');
      const qmpArg = argv.find((a) => a.startsWith('socket,') && a.includes('qmp'));
      const qmpGiven = /(?:^|,)path=([^,]+)/.exec(qmpArg ?? '')?.[1];
      if (!qmpGiven) throw new Error(`no QMP socket in the plugin's QEMU command line: ${argv.join(' ')}`);
      const qmpPath = join(dir, 'qmp.sock');
      // A second monitor for the relay's client (QEMU serves one client per monitor).
      const relayedQmpPath = join(dir, 'qmp-relayed.sock');
      const [binary, ...args] = [
        ...directArgv(argv).map((a) => a.replaceAll(console_.path, directConsole).replace(`path=${qmpGiven}`, `path=${qmpPath}`)),
        '-qmp',
        `unix:${relayedQmpPath},server=on,wait=off`,
      ];
      if (!binary) throw new Error('empty QEMU command line');
      log('qemu-pause: booting the same guest directly');
      direct = spawn(binary, args, { cwd: dir, stdio: ['ignore', 'ignore', 'ignore'] });
      let exited = false;
      direct.once('exit', () => (exited = true));
      await markerAt(directConsole, READY_MARKER, await sizeOf(directConsole), timeoutMs, () => !exited);
      qmp = await openQmp(qmpPath, timeoutMs);
      const raw = qmp;
      relay = await startRelay(ws.helper('qmp-relay'), join(dir, 'relay.sock'), relayedQmpPath, timeoutMs);
      const relayAt = relay.socket;
      const theVm = vm;
      // CPU per cycle of each process (the bench's own is the host's, or the raw QMP client's): which side's handling costs.
      const hvplugCpu: CpuTally = { cycles: 0, ms: {} };
      const qmpCpu: CpuTally = { cycles: 0, ms: {} };
      const hvplugPids = { plugin: parentOf(pid), qemu: pid };
      const directPid = direct.pid;
      const pauseResume = inTurn(() => theVm.pause(), () => theVm.resume());
      const stopCont = inTurn(() => raw.execute('stop'), () => raw.execute('cont'));
      const viaHvplug = (): Promise<number> => tallied(hvplugCpu, hvplugPids, perRep, () => cycles(perRep, pauseResume));
      const viaQmp = (): Promise<number> =>
        tallied(qmpCpu, directPid === undefined ? {} : { qemu: directPid }, perRep, () => cycles(perRep, stopCont));
      // The floor any call through hvplug pays here: two QMP queries that change nothing (vm.check() is the plugin's
      // query-status) against the same two sent raw. What a pause + resume costs beyond it is the calls' own work.
      const twoChecks = inTurn(() => theVm.check(), () => theVm.check());
      const twoQueries = inTurn(() => raw.execute('query-status'), () => raw.execute('query-status'));
      // The floor of any out-of-process controller: raw stop/cont through a process that relays bytes unread. Connected
      // only for its own segments: a client on QEMU's second monitor would get, and relay, the raw path's events.
      const viaRelay = async (n: number): Promise<number> => {
        const relayed = await openQmp(relayAt, timeoutMs);
        try {
          return await cycles(n, inTurn(() => relayed.execute('stop'), () => relayed.execute('cont')));
        } finally {
          relayed.close();
        }
      };
      log(`qemu-pause: warm-up, ${warmup} cycles per path`);
      // The first cycles of each path, on their own: what a short-lived caller pays (the bench's code and the plugin's not optimised yet).
      const first = { hvplug: await cycles(FIRST_CYCLES, pauseResume), qmp: await cycles(FIRST_CYCLES, stopCont) };
      for (const path of [pauseResume, stopCont, twoChecks, twoQueries]) await cycles(warmup, path);
      await viaRelay(warmup);
      // The five in every repetition, their order rotating, so that the floor is measured in the same minutes.
      const runs = await alternate(reps, {
        hvplug: viaHvplug,
        qmp: viaQmp,
        floorHvplug: () => cycles(perRep, twoChecks),
        floorQmp: () => cycles(perRep, twoQueries),
        relay: () => viaRelay(perRep),
      });
      const cpu = { hvplug: perCycle(hvplugCpu), qmp: perCycle(qmpCpu) };
      log(`qemu-pause: CPU ms per cycle: hvplug ${JSON.stringify(cpu.hvplug)}, raw QMP ${JSON.stringify(cpu.qmp)}`);
      const hvplug = measure('hvplug', 'ms', runs.hvplug);
      const rawQmp = measure('raw QMP, one connection', 'ms', runs.qmp);
      const floorHvplug = measure('hvplug, 2× vm.check()', 'ms', runs.floorHvplug);
      const relayed = measure('raw QMP through a relay process', 'ms', runs.relay);
      const overFloor = compare('pause + resume vs that floor, both through hvplug', hvplug, floorHvplug);
      const floor = compare('floor: two queries (vm.check(), QMP query-status) through hvplug vs raw', floorHvplug, measure('raw QMP, 2× query-status', 'ms', runs.floorQmp));
      const relayFloor = compare('floor: stop + cont through a process that relays the bytes (one process hop each way) vs raw', relayed, rawQmp);
      const overRelay = compare('pause + resume through hvplug vs through that relay', hvplug, relayed);
      // Said with this run's own numbers: the hop any out-of-process controller adds, and what hvplug adds to it.
      const why = (): string =>
        `a process between the caller and QEMU that only relays the bytes costs ${ratioText(relayFloor)} raw QMP on its own; ` +
        `hvplug costs ${ratioText(overRelay)} that relay (JSON-RPC both ways, validation on both sides, the status written before ` +
        `the call returns, the status event), and two vm.check() through it cost ${ratioText(floor)} two raw queries; CPU a cycle: ` +
        `host ${cpu.hvplug.bench} ms, plugin ${cpu.hvplug.plugin} ms, QEMU ${cpu.hvplug.qemu} ms, against the raw client's ` +
        `${cpu.qmp.bench} ms and its QEMU's ${cpu.qmp.qemu} ms (README, Performance: what was tried)`;
      return {
        method,
        rows: [
          compare('pause + resume of a running guest', hvplug, rawQmp, { on: 'ratio', op: '<=', limit: 2, text: '≤ 2× raw QMP' }, { why }),
          floor,
          overFloor,
          relayFloor,
          overRelay,
          compare(
            `the first ${FIRST_CYCLES} cycles after boot, before the warm-up`,
            measure('hvplug', 'ms', [first.hvplug]),
            measure('raw QMP, one connection', 'ms', [first.qmp]),
          ),
        ],
        raw: { config: { ...cfg.qemu, ...cfg.qemuPause }, unit: 'ms', perRep: runs, first, cpuMsPerCycle: cpu, runDir, argv },
      };
    } finally {
      qmp?.close();
      await relay?.stop();
      if (direct && direct.exitCode === null) {
        const gone = new Promise<void>((r) => direct?.once('exit', () => r()));
        direct.kill('SIGKILL');
        await gone;
      }
      await vm?.delete().catch(() => undefined);
      await host.close();
    }
  },
};
