import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { PluginHost, type ShimVm } from 'hvplug';
import { silentLogger } from '../clients.js';
import { collect } from '../drivers.js';
import type { Figure } from '../figure.js';
import { notMeasured } from '../figure.js';
import { openQmp, type RawQmp } from '../qmp.js';
import { compare, measure, type Row } from '../report.js';
import { builtPlugin } from '../setup.js';
import { IDLE_SCRIPT } from './qemu-pause.js';
import { argvOf, bootConfig, directArgv, markerAt, onPath, READY_MARKER } from './qemu.js';

const QEMU = 'qemu-system-x86_64';
/** As often as the qemu plugin asks query-migrate while a migration runs (plugins/qemu/src/migration.ts). */
const POLL_MS = 20;
/** How often a completed migration is asked again for the figures QEMU computes a moment later (as the plugin does). */
const SETTLE_MS = 2;
/** How long a migrated-away QEMU may take to quit before it is killed (the plugin's quitQemu allows as long). */
const QUIT_MS = 3_000;
/** Bytes of a baseline QEMU's stderr kept for an error message. */
const STDERR_TAIL = 4_096;

/** query-migrate's answer, as far as the baseline reads it (QEMU 7.2). */
const MigrateInfo = z
  .object({
    status: z.string().optional(),
    'error-desc': z.string().optional(),
    'total-time': z.number().optional(),
    downtime: z.number().optional(),
    ram: z.object({ transferred: z.number() }).loose().optional(),
  })
  .loose();
const StatusInfo = z.object({ status: z.string() }).loose();

/** One live migration, as each side measures it. */
interface Sample {
  /** QEMU's own `downtime` (query-migrate on the source): the guest ran nowhere this long. */
  downtimeMs: number;
  /** QEMU's own `total-time`: `migrate` → completed. */
  totalMs: number;
  /** The bench's clock: from asking for the migration to the guest running at the destination and the source QEMU gone. */
  endToEndMs: number;
  transferredBytes: number;
}

/** A QEMU the bench started itself, with its QMP connection. */
interface DirectQemu {
  child: ChildProcess;
  qmp: RawQmp;
  gone: Promise<void>;
  dir: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The `path=` of the chardev argument that starts with `prefix` (its type) and mentions `what` (its id). */
function optionPath(argv: readonly string[], prefix: string, what: string): string {
  const arg = argv.find((a) => a.startsWith(prefix) && a.includes(what));
  const path = /(?:^|,)path=([^,]+)/.exec(arg ?? '')?.[1];
  if (path === undefined) throw new Error(`no ${prefix}…${what}…path= chardev in the plugin's QEMU command line: ${argv.join(' ')}`);
  return path;
}

/**
 * The plugin's command line with the QMP socket and the console log moved into `dir` (each QEMU its own; relative
 * paths such as the pidfile land in its cwd, `dir`) and without -daemonize; `keepIncoming` keeps -incoming defer
 * (a destination), otherwise it goes with -S (directArgv: a source that boots at once).
 */
function relocate(argv: readonly string[], dir: string, keepIncoming: boolean, images: Images): string[] {
  const qmp = optionPath(argv, 'socket,', 'qmp');
  const console_ = optionPath(argv, 'file,', 'console');
  const base = keepIncoming ? argv.filter((a) => a !== '-daemonize') : directArgv(argv);
  return base.map((a, i) => {
    const prev = base[i - 1];
    if (prev === '-kernel' || prev === '-initrd') return images[prev];
    return a.replace(`path=${qmp}`, `path=${join(dir, 'qmp.sock')}`).replace(`path=${console_}`, `path=${join(dir, 'console.log')}`);
  });
}

/** Copies of the guest's kernel and initrd: the plugin's lie in the VM's run directory, which goes when the VM migrates away. */
type Images = Record<'-kernel' | '-initrd', string>;

async function copyImages(argv: readonly string[], dir: string): Promise<Images> {
  await mkdir(dir, { recursive: true });
  const copy = async (opt: '-kernel' | '-initrd'): Promise<string> => {
    const from = argv[argv.indexOf(opt) + 1];
    if (argv.indexOf(opt) < 0 || from === undefined) throw new Error(`no ${opt} in the plugin's QEMU command line: ${argv.join(' ')}`);
    const to = join(dir, opt.slice(1));
    await copyFile(from, to);
    return to;
  };
  return { '-kernel': await copy('-kernel'), '-initrd': await copy('-initrd') };
}

async function startDirect(argv: readonly string[], dir: string, timeoutMs: number): Promise<DirectQemu> {
  await mkdir(dir, { recursive: true });
  const [binary, ...args] = argv;
  if (binary === undefined) throw new Error('empty QEMU command line');
  const child = spawn(binary, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => void (stderr = (stderr + c.toString()).slice(-STDERR_TAIL)));
  // A failed spawn emits error and maybe no exit: either ends it.
  const gone = new Promise<void>((r) => {
    child.once('exit', () => r());
    child.once('error', () => r());
  });
  try {
    const qmp = await Promise.race([
      openQmp(join(dir, 'qmp.sock'), timeoutMs),
      gone.then(() => Promise.reject(new Error(`QEMU exited at start: ${stderr.trim().slice(-300)}`))),
    ]);
    return { child, qmp, gone, dir };
  } catch (err) {
    child.kill('SIGKILL');
    await gone;
    throw err;
  }
}

async function stopDirect(q: DirectQemu): Promise<void> {
  q.qmp.close();
  if (q.child.exitCode === null && q.child.signalCode === null) q.child.kill('SIGKILL');
  await q.gone;
}

/**
 * The baseline: what a controller that drives QEMU itself does for the same migration, and no more. A destination
 * QEMU with the plugin's destination command line (-incoming defer), the capability the plugin sets there (events),
 * migrate-incoming on a unix socket in its directory; migrate on the source, query-migrate every POLL_MS until
 * completed; quit the source; the destination asked until it runs.
 */
async function migrateDirectly(src: DirectQemu, dstArgv: (dir: string) => string[], dir: string, timeoutMs: number): Promise<{ sample: Sample; dst: DirectQemu }> {
  const t0 = performance.now();
  const dst = await startDirect(dstArgv(dir), dir, timeoutMs);
  try {
    await dst.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
    await dst.qmp.execute('migrate-incoming', { uri: 'unix:migrate.sock' });
    await src.qmp.execute('migrate', { uri: `unix:${join(dir, 'migrate.sock')}` });
    const end = t0 + timeoutMs;
    let info: z.output<typeof MigrateInfo>;
    for (;;) {
      info = MigrateInfo.parse(await src.qmp.execute('query-migrate'));
      // As the plugin does (plugins/qemu/src/migration.ts): QEMU says completed a moment before it computes the figures.
      if (info.status === 'completed' && info['total-time']) break;
      if (info.status === 'failed' || info.status === 'cancelled') throw new Error(`direct migration ${info.status}: ${info['error-desc'] ?? ''}`);
      if (performance.now() > end) throw new Error(`direct migration not completed within ${timeoutMs} ms (${info.status ?? '?'})`);
      await sleep(info.status === 'completed' ? SETTLE_MS : POLL_MS);
    }
    await src.qmp.execute('quit').catch(() => undefined);
    await Promise.race([src.gone, sleep(QUIT_MS)]);
    await stopDirect(src);
    while (StatusInfo.parse(await dst.qmp.execute('query-status')).status !== 'running') {
      if (performance.now() > end) throw new Error(`the direct destination is not running ${timeoutMs} ms after the migration began`);
      await sleep(POLL_MS);
    }
    const endToEndMs = performance.now() - t0;
    if (info.downtime === undefined || info['total-time'] === undefined) throw new Error(`query-migrate gave no downtime or total-time: ${JSON.stringify(info)}`);
    return { dst, sample: { downtimeMs: info.downtime, totalMs: info['total-time'], endToEndMs, transferredBytes: info.ram?.transferred ?? 0 } };
  } catch (err) {
    await stopDirect(dst);
    throw err;
  }
}

/** Figure 5c: live migration of a running QEMU guest between two PluginHosts vs the same two QEMUs driven over QMP. */
export const qemuMigrate: Figure = {
  id: 'qemu-migrate',
  title: '5c QEMU live migration',
  async run({ ws, cfg, log }) {
    const { reps, timeoutMs, enabled } = cfg.qemu;
    const method =
      `a booted guest (the qemu plugin's default kernel and busybox initramfs running "${IDLE_SCRIPT}", TCG, "${READY_MARKER}" seen) ` +
      `migrated live over a unix socket, back and forth, once per side per repetition. hvplug: PluginHost.migrate between two hosts ` +
      `(two state directories, two qemu plugin processes): the destination's record, vm/receiveMigration (a QEMU under -incoming defer), ` +
      `vm/migrate, the commit. Baseline: QEMUs started by the bench with the plugin's own command lines (the destination's with ` +
      `-incoming defer), QMP over one unix-socket connection each: migrate-set-capabilities events + migrate-incoming on the ` +
      `destination, migrate + query-migrate every ${POLL_MS} ms on the source, quit the source, the destination asked until running. ` +
      `Downtime and total time are QEMU's own (query-migrate on the source); end to end is the bench's clock from asking to the guest ` +
      `running at the destination with the source QEMU gone. ${reps} reps after one warm-up migration each, the order alternating, a GC between`;
    if (!enabled) return notMeasured('skipped in --quick (a TCG boot takes seconds)', method);
    if (!onPath(QEMU)) return notMeasured(`${QEMU} is not on PATH`, method);
    const plugin = builtPlugin('qemu');
    if (!plugin) return notMeasured('the qemu plugin (plugins/qemu/dist) is not built: run npm run build', method);
    const root = join(ws.dir, 'qemu-migrate');
    const hosts = (['a', 'b'] as const).map(
      (name) =>
        new PluginHost({
          stateDir: join(root, name, 'state'),
          runtimeDir: join(root, name, 'run'),
          logger: silentLogger(),
          plugins: [{ name: 'qemu', command: plugin.executable }],
        }),
    );
    let at = 0;
    let vmId: string | undefined;
    let direct: DirectQemu | undefined;
    try {
      const hv = await (hosts[0] as PluginHost).hypervisor('qemu');
      const base = bootConfig(hv);
      const vm = await hv.createVm({ config: { ...base, plugin: { ...base.plugin, guestScript: IDLE_SCRIPT } } });
      vmId = vm.id;
      const theVmId = vm.id;
      const console_ = await vm.console();
      if (console_.kind !== 'log') throw new Error(`the plugin's console is a ${console_.kind}, not a log file`);
      await vm.start();
      const pid = (await vm.info()).pid;
      if (pid === undefined) throw new Error('vm/info names no VMM pid');
      const srcArgv = argvOf(pid);
      const images = await copyImages(srcArgv, join(root, 'direct', 'images'));
      log('qemu-migrate: booting the guest through hvplug');
      await markerAt(console_.path, READY_MARKER, 0, timeoutMs, () => existsSync(`/proc/${pid}`));

      const viaHvplug = async (): Promise<Sample> => {
        const from = hosts[at] as PluginHost;
        const to = hosts[1 - at] as PluginHost;
        const t0 = performance.now();
        const report = await from.migrate(theVmId, to, { timeoutMs });
        const endToEndMs = performance.now() - t0;
        at = 1 - at;
        if (report.downtimeMs === undefined) throw new Error(`the qemu plugin reported no downtime: ${JSON.stringify(report)}`);
        return { downtimeMs: report.downtimeMs, totalMs: report.totalMs, endToEndMs, transferredBytes: report.transferredBytes };
      };
      log('qemu-migrate: warm-up migration through hvplug');
      await viaHvplug();
      // The destination's command line as the plugin wrote it (-incoming defer), taken from the QEMU that now runs the guest.
      const moved = (await (hosts[at] as PluginHost).vm(theVmId)) as ShimVm | undefined;
      const dstPid = (await moved?.info())?.pid;
      if (dstPid === undefined) throw new Error('the migrated VM names no VMM pid');
      const dstArgv = argvOf(dstPid);
      if (!dstArgv.includes('-incoming')) throw new Error(`the plugin's destination QEMU has no -incoming: ${dstArgv.join(' ')}`);

      log('qemu-migrate: booting the same guest directly');
      let n = 0;
      const dirOf = (): string => join(root, 'direct', String(n++));
      const firstDir = dirOf();
      direct = await startDirect(relocate(srcArgv, firstDir, false, images), firstDir, timeoutMs);
      const firstPid = direct.child.pid;
      await markerAt(join(firstDir, 'console.log'), READY_MARKER, 0, timeoutMs, () => firstPid !== undefined && existsSync(`/proc/${firstPid}`));
      const viaQmp = async (): Promise<Sample> => {
        if (!direct) throw new Error('no direct QEMU runs the guest');
        const { sample, dst } = await migrateDirectly(direct, (dir) => relocate(dstArgv, dir, true, images), dirOf(), timeoutMs);
        direct = dst;
        return sample;
      };
      log('qemu-migrate: warm-up migration, direct');
      await viaQmp();

      const runs: { hvplug: Sample; direct: Sample }[] = [];
      for (let r = 0; r < reps; r++) {
        log(`qemu-migrate: repetition ${r + 1}/${reps}`);
        collect();
        if (r % 2 === 0) {
          const h = await viaHvplug();
          collect();
          runs.push({ hvplug: h, direct: await viaQmp() });
        } else {
          const d = await viaQmp();
          collect();
          runs.push({ direct: d, hvplug: await viaHvplug() });
        }
      }
      const m = (side: 'hvplug' | 'direct', k: keyof Sample, label: string): ReturnType<typeof measure> => measure(label, 'ms', runs.map((r) => r[side][k]));
      const total = compare('total time (QEMU\'s own)', m('hvplug', 'totalMs', 'hvplug'), m('direct', 'totalMs', 'QEMU driven directly'));
      // QEMU measures the downtime itself: hvplug can move it only by taking CPU from QEMU, which total time would show too.
      const why = (row: Row): string =>
        `the downtime is QEMU's own figure (${row.baseline?.median.toFixed(0) ?? '?'} ms driven directly), and its ` +
        `per-repetition ratios spread ${row.ratio?.min.toFixed(2) ?? '?'}–${row.ratio?.max.toFixed(2) ?? '?'}× over ${runs.length} ` +
        `repetitions (TCG scheduling); QEMU's total time for the same migrations is ${total.ratio?.median.toFixed(2) ?? '?'}× direct`;
      return {
        method,
        rows: [
          compare(
            'downtime (QEMU\'s own)',
            m('hvplug', 'downtimeMs', 'hvplug'),
            m('direct', 'downtimeMs', 'QEMU driven directly'),
            { on: 'ratio', op: '<=', limit: 1.1, text: '≤ 1.1× direct' },
            { why },
          ),
          total,
          compare('end to end, ask → running at the destination', m('hvplug', 'endToEndMs', 'hvplug'), m('direct', 'endToEndMs', 'QEMU driven directly')),
        ],
        raw: { config: cfg.qemu, unit: 'ms', perRep: runs, srcArgv, dstArgv },
      };
    } finally {
      if (direct) await stopDirect(direct);
      // Both hosts: a migration that failed half-way may have left the VM on either.
      for (const h of hosts) {
        if (vmId !== undefined) await (await h.vm(vmId).catch(() => undefined))?.delete().catch(() => undefined);
        await h.close();
      }
    }
  },
};
