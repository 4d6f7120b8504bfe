import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { packageRoot, type ShimVm } from 'hvplug';
import { alternate } from '../drivers.js';
import type { Figure } from '../figure.js';
import { notMeasured } from '../figure.js';
import { compare, measure } from '../report.js';
import { builtPlugin } from '../setup.js';
import { hostedEnv, nodeNoop } from './coldstart.js';
import { EXAMPLE, exampleHost } from './scale.js';

const READY_TIMEOUT_MS = 60_000;

interface Dirs {
  state: string;
  run: string;
}

function cliEnv(): NodeJS.ProcessEnv {
  // The environment node -e '' is timed in (the baseline), so that both start alike: a variable node acts on at start
  // (NODE_EXTRA_CA_CERTS reads and parses a CA bundle, ~30 ms here) would otherwise be charged to hvplug alone. No
  // plugins config of the machine's: the example plugin is found as the bundled one.
  return { ...hostedEnv(), HVPLUG_CONFIG: '' };
}

/** How a command starts: an executable and the arguments before hvplug's own ([launcher] or [node, main.js]). */
type Cli = readonly [string, ...string[]];

function spawnCli(cli: Cli, dirs: Dirs, args: readonly string[]): ChildProcessByStdio<null, Readable, Readable> {
  return spawn(cli[0], [...cli.slice(1), '--state-dir', dirs.state, '--runtime-dir', dirs.run, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv() });
}

/** ms from spawn() of `hvplug <args>` to its exit; a failure is an error, not a time. */
function timedCli(cli: Cli, dirs: Dirs, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawnCli(cli, dirs, args);
    child.stdout.resume();
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2_000)));
    child.once('error', reject);
    child.once('exit', (code) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve(ms);
      else reject(new Error(`hvplug ${args.join(' ')} exited ${code}: ${stderr}`));
    });
  });
}

function cliOutput(cli: Cli, dirs: Dirs, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(cli, dirs, args);
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2_000)));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`hvplug ${args.join(' ')} exited ${code}: ${err}`))));
  });
}

/** `hvplug daemon` on the dirs, resolved once it says it is ready; stop() ends it with SIGTERM. */
async function startDaemon(cli: Cli, dirs: Dirs): Promise<{ stop: () => Promise<void> }> {
  const child = spawnCli(cli, dirs, ['daemon']);
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2_000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`hvplug daemon not ready within ${READY_TIMEOUT_MS} ms: ${err}`)), READY_TIMEOUT_MS);
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`hvplug daemon exited ${code} before it was ready: ${err}`));
    });
  });
  return {
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** One command's cost: the mean of a pause and the resume after it, each spawn → exit. */
async function pauseResume(run: (cmd: 'pause' | 'resume') => Promise<number>): Promise<number> {
  const pause = await run('pause');
  const resume = await run('resume');
  return (pause + resume) / 2;
}

/** The daemon figure: one CLI command on a running VM through the daemon, against `node -e ''`. */
export const daemon: Figure = {
  id: 'daemon',
  title: '9 CLI through the daemon',
  async run({ ws, cfg, log }) {
    const { warmup, reps } = cfg.daemon;
    // The executable as installed (package.json's bin): a launcher that starts pause and resume from the fast path's
    // startup snapshot when a daemon serves them, the CLI (main.js, running its bundle) otherwise.
    const launcher = join(packageRoot(), 'dist/cli/hvplug');
    const main = join(packageRoot(), 'dist/src/cli/main.js');
    const cli: Cli = [launcher];
    const viaMain: Cli = [process.execPath, main];
    const snapshot = existsSync(join(packageRoot(), 'dist/cli/fast.blob'));
    const method =
      `hvplug is dist/cli/hvplug as installed (package.json's bin), ${snapshot ? "starting pause and resume from the fast path's V8 startup snapshot (dist/cli/fast.blob)" : 'without the fast path snapshot (dist/cli/fast.blob missing: it could not be built, see npm run build:ts)'}. ` +
      `spawn(hvplug, [pause <id>]) to exit and the same for resume, on a running example-plugin VM, averaged per ` +
      `repetition into one command; through a running hvplug daemon, and without one (the CLI's own host: plugin start + ` +
      `re-attach each time), vs spawn(node, ['-e', '']) to exit. Info rows: the same through node dist/src/cli/main.js (the ` +
      `fast path as a module, no snapshot), hvplug --version (the CLI's startup alone: node, its modules, no host) and ` +
      `PluginHost in the bench process (vm.pause + vm.resume, averaged). ${reps} reps alternating after ${warmup} warm-up runs`;
    if (!existsSync(launcher) || !existsSync(main)) return notMeasured('the CLI is not built (dist/cli/hvplug, dist/src/cli/main.js): run npm run build', method);
    if (!builtPlugin(EXAMPLE)) return notMeasured('the example plugin (plugins/example-proprietary/dist) is not built: run npm run build', method);
    const base = join(ws.dir, 'daemon');
    const served: Dirs = { state: join(base, 'served', 'state'), run: join(base, 'served', 'run') };
    const alone: Dirs = { state: join(base, 'alone', 'state'), run: join(base, 'alone', 'run') };
    for (const d of [served, alone]) await mkdir(d.run, { recursive: true, mode: 0o700 });
    log('daemon: starting hvplug daemon and a VM on each side');
    const d = await startDaemon(cli, served);
    const host = exampleHost(join(base, 'library'));
    let servedId: string | undefined;
    let aloneId: string | undefined;
    try {
      servedId = await cliOutput(cli, served, ['run', '--detach', '--plugin', EXAMPLE]);
      aloneId = await cliOutput(cli, alone, ['run', '--detach', '--plugin', EXAMPLE]);
      const hv = await host.hypervisor(EXAMPLE);
      const vm: ShimVm = await hv.createVm({ config: { memory: { sizeMiB: 64 } } });
      await vm.start({});
      const sid = servedId;
      const aid = aloneId;
      const variants = {
        node: () => nodeNoop(),
        version: () => timedCli(cli, served, ['--version']),
        daemon: () => pauseResume((cmd) => timedCli(cli, served, [cmd, sid])),
        module: () => pauseResume((cmd) => timedCli(viaMain, served, [cmd, sid])),
        alone: () => pauseResume((cmd) => timedCli(cli, alone, [cmd, aid])),
        library: () =>
          pauseResume(async (cmd) => {
            const t0 = performance.now();
            await (cmd === 'pause' ? vm.pause({}) : vm.resume({}));
            return performance.now() - t0;
          }),
      };
      log(`daemon: ${warmup} warm-up runs, ${reps} repetitions`);
      await alternate(warmup, variants);
      const runs = await alternate(reps, variants);
      const nodeM = measure("node -e ''", 'ms', runs.node);
      const daemonM = measure('CLI via daemon', 'ms', runs.daemon);
      return {
        method,
        rows: [
          compare('one command (pause or resume) through the daemon vs node', daemonM, nodeM, { on: 'ratio', op: '<=', limit: 1.5, text: "≤ 1.5× node -e ''" }),
          compare('the same through node main.js (no snapshot) vs node', measure('CLI via daemon, main.js', 'ms', runs.module), nodeM),
          compare('the same without a daemon vs node', measure('CLI alone', 'ms', runs.alone), nodeM),
          compare('through the daemon vs without', daemonM, measure('CLI alone', 'ms', runs.alone)),
          compare('hvplug --version (CLI startup) vs node', measure('hvplug --version', 'ms', runs.version), nodeM),
          compare('through the daemon vs hvplug --version', daemonM, measure('hvplug --version', 'ms', runs.version)),
          compare('PluginHost call in-process (reference)', measure('library', 'ms', runs.library), undefined),
        ],
        raw: { config: cfg.daemon, unit: 'ms', perRep: runs },
      };
    } finally {
      if (servedId) await cliOutput(cli, served, ['stop', '--force', servedId]).catch(() => undefined);
      if (aloneId) await cliOutput(cli, alone, ['stop', '--force', aloneId]).catch(() => undefined);
      await d.stop();
      for (const vm of (await host.hypervisor(EXAMPLE).catch(() => undefined))?.listVms() ?? []) await vm.delete().catch(() => undefined);
      await host.close();
    }
  },
};
