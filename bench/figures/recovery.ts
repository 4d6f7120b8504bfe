import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PluginClient, PluginSpec, type PluginHost, type ShimVm } from 'hvplug';
import { silentLogger } from '../clients.js';
import { alternate } from '../drivers.js';
import type { Figure } from '../figure.js';
import { notMeasured } from '../figure.js';
import { compare, measure } from '../report.js';
import { builtPlugin } from '../setup.js';
import { BENCH_VM_CONFIG, EXAMPLE, exampleHost, inPool } from './scale.js';

const RESTART_TIMEOUT_MS = 30_000;

function cmdline(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return undefined;
  }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/**
 * ms from SIGKILL of the plugin to the supervisor's `plugin-restarted`, which it emits once the new process
 * has answered initialize and vm/recover has re-attached every VM. Checks that every VM is running again.
 */
interface Restart {
  ms: number;
  recovered: number;
  /** ms from SIGKILL to: the host noticing the exit, the new process answering initialize. */
  exitSeenMs: number;
  startedMs: number;
}

async function killAndWait(host: PluginHost, vms: readonly ShimVm[]): Promise<Restart> {
  const victim = (await host.client(EXAMPLE))?.pid;
  if (victim === undefined) throw new Error('no plugin process to kill');
  let recovered = 0;
  let exitSeenMs = Number.NaN;
  let startedMs = Number.NaN;
  const onRecovered = (): void => void recovered++;
  const onExited = (): void => void (exitSeenMs = performance.now() - t0);
  const onStarted = (): void => void (startedMs = performance.now() - t0);
  host.on('vm-recovered', onRecovered);
  host.once('plugin-exited', onExited);
  host.once('plugin-started', onStarted);
  const restarted = new Promise<void>((resolve) => host.once('plugin-restarted', () => resolve()));
  const t0 = performance.now();
  process.kill(victim, 'SIGKILL');
  await within(restarted, RESTART_TIMEOUT_MS, 'plugin restart');
  const ms = performance.now() - t0;
  host.off('vm-recovered', onRecovered);
  host.off('plugin-exited', onExited);
  host.off('plugin-started', onStarted);
  const notRunning = vms.filter((vm) => vm.status !== 'running');
  if (notRunning.length) throw new Error(`${notRunning.length} VMs not running after the restart (e.g. ${notRunning[0]?.status})`);
  return { ms, recovered, exitSeenMs, startedMs };
}

/**
 * The way the brief describes for hosts without supervision: SIGKILL the plugin, start a fresh process through
 * a new PluginHost and vm/recover each VM with the state the first process returned; ms from the new host's
 * first call to the last recover answered. Returns the new host (its process now owns the VMs).
 */
async function manualRecover(dir: string, vms: readonly ShimVm[], victim: PluginHost): Promise<{ ms: number; host: PluginHost; vms: ShimVm[] }> {
  const pid = (await victim.client(EXAMPLE))?.pid;
  if (pid === undefined) throw new Error('no plugin process to kill');
  const exited = victim.client(EXAMPLE).then((c) => c?.exited);
  process.kill(pid, 'SIGKILL');
  await exited;
  const host = exampleHost(dir, { healthIntervalMs: 0, maxRestarts: 0 });
  const t0 = performance.now();
  const hv = await host.hypervisor(EXAMPLE);
  const recovered = await Promise.all(vms.map((vm) => hv.recoverVm({ vmId: vm.id, config: vm.config, state: vm.state ?? null })));
  const ms = performance.now() - t0;
  const notRunning = recovered.filter((vm) => vm.status !== 'running');
  if (notRunning.length) throw new Error(`${notRunning.length} VMs not running after vm/recover (e.g. ${notRunning[0]?.status})`);
  return { ms, host, vms: recovered };
}

/** ms of PluginClient.start (spawn → initialize answered → initialized): what the supervisor does per restart, without VMs. */
async function coldStart(executable: string, dir: string): Promise<number> {
  const t0 = performance.now();
  const client = await PluginClient.start(PluginSpec.parse({ name: EXAMPLE, command: executable }), {
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logger: silentLogger(),
    logLevel: 'info',
    hostVersion: '0',
  });
  const ms = performance.now() - t0;
  await client.close();
  return ms;
}

async function startVms(host: PluginHost, n: number): Promise<ShimVm[]> {
  const hv = await host.hypervisor(EXAMPLE);
  return inPool(Array.from({ length: n }, (_, i) => i), 10, async () => {
    const vm = await hv.createVm({ config: BENCH_VM_CONFIG });
    await vm.start();
    return vm;
  });
}

async function cleanup(vms: readonly ShimVm[]): Promise<void> {
  await inPool(vms, 10, async (vm) => {
    await vm.stop({ graceMs: 2_000 }).catch(() => undefined);
    await vm.delete().catch(() => undefined);
  });
}

/** Figure 6: re-attaching 100 running VMs after the plugin is SIGKILLed. */
export const recovery: Figure = {
  id: 'recovery',
  title: '6 recovery',
  async run({ ws, cfg, log }) {
    const { vms: n, reps } = cfg.recovery;
    const plugin = builtPlugin(EXAMPLE);
    const method =
      `supervised: ${n} running VMs on one example plugin process; SIGKILL it; time until PluginHost emits plugin-restarted (the ` +
      `supervisor has spawned a new process, handshaken, and vm/recover-ed every VM; all checked running). Restart backoff set to 0 ` +
      `(default 100 ms) so the figure is the mechanism, not the configured wait. Baseline: PluginClient.start of the same plugin ` +
      `(spawn → initialize answered → initialized). Info row: manual re-attach (SIGKILL, new PluginHost, vm/recover × ${n} with ` +
      `ShimVm.state). ${reps} reps alternating`;
    if (!plugin) return notMeasured('the example plugin (plugins/example-proprietary/dist) is not built: run npm run build', method);
    const dir = join(ws.dir, 'recovery');
    const host = exampleHost(dir, { backoffMs: 0, healthIntervalMs: 0, maxRestarts: 1_000, crashWindowMs: 1 });
    const manualHosts: PluginHost[] = [];
    let vms: ShimVm[] = [];
    let owner: PluginHost = host;
    let guests: { pid: number; cmdline: string | undefined }[] = [];
    try {
      log(`recovery: starting ${n} VMs`);
      vms = await startVms(host, n);
      guests = (await Promise.all(vms.map((vm) => vm.info()))).flatMap((i) => (i.pid === undefined ? [] : [{ pid: i.pid, cmdline: cmdline(i.pid) }]));
      const restarts: Restart[] = [];
      const supervised = async (): Promise<number> => {
        const r = await killAndWait(host, vms);
        restarts.push(r);
        return r.ms;
      };
      log(`recovery: warm-up, then ${reps} repetitions`);
      await alternate(1, { supervised, cold: () => coldStart(plugin.executable, dir) });
      const runs = await alternate(reps, { supervised, cold: () => coldStart(plugin.executable, dir) });

      // The manual way last, with supervision out of the way: the supervised host shuts down gracefully (VMs keep
      // running), an unsupervised host re-attaches them, and each repetition kills the previous host's plugin.
      log(`recovery: manual re-attach, ${reps} repetitions`);
      await host.close();
      const manual: number[] = [];
      const first = exampleHost(join(dir, 'manual-0'), { healthIntervalMs: 0, maxRestarts: 0 });
      manualHosts.push(first);
      const hv = await first.hypervisor(EXAMPLE);
      vms = await Promise.all(vms.map((vm) => hv.recoverVm({ vmId: vm.id, config: vm.config, state: vm.state ?? null })));
      owner = first;
      for (let r = 0; r < reps; r++) {
        const m = await manualRecover(join(dir, `manual-${r + 1}`), vms, owner);
        manualHosts.push(m.host);
        owner = m.host;
        vms = m.vms;
        manual.push(m.ms);
      }
      const coldM = measure('cold start', 'ms', runs.cold);
      return {
        method,
        rows: [
          compare(`supervised, ${n} VMs`, measure('SIGKILL → all re-attached', 'ms', runs.supervised), coldM, {
            on: 'ratio',
            op: '<=',
            limit: 2,
            text: '≤ 2× cold start',
          }),
          compare(`manual, ${n} VMs`, measure('new host → all recovered', 'ms', manual), coldM),
        ],
        raw: {
          config: cfg.recovery,
          unit: 'ms',
          measuredBy: 'supervisor',
          perRep: { ...runs, manual },
          // Every supervised restart, warm-up included: when the exit was seen, when the new process was up, how many VMs came back.
          restarts,
        },
      };
    } finally {
      await cleanup(vms);
      await Promise.all([host, ...manualHosts].map((h) => h.close()));
      // Last resort after a failure half-way: no guest process outlives the bench (the command line is compared
      // first, so that a recycled pid of someone else's process is never hit).
      for (const g of guests) {
        if (cmdline(g.pid) !== g.cmdline) continue;
        try {
          process.kill(g.pid, 'SIGKILL');
        } catch {
          // Gone in between.
        }
      }
    }
  },
};
