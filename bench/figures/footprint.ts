import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from 'hvplug';
import { encodeFrame, FrameDecoder } from 'hvplug/transport';
import { alternate } from '../drivers.js';
import type { Figure } from '../figure.js';
import { notMeasured } from '../figure.js';
import { compare, measure } from '../report.js';
import { hasProcfs, idleNodeRss, importRss, rssOf, settle, SETTLE_MS } from '../rss.js';
import { builtPlugin } from '../setup.js';
import { BENCH_VM_CONFIG, EXAMPLE } from './scale.js';
import { initializeParams } from './coldstart.js';
import type { InitializeParams } from 'hvplug/protocol';

/**
 * RSS (MiB) of a plugin process after it answered initialize and one call (health/ping, the lightest call;
 * `initialized` sent between, as a host does).
 */
function pluginAfterFirstCall(executable: string, params: InitializeParams): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(executable, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    const send = (msg: object): void => {
      child.stdin.write(encodeFrame(JSON.stringify({ jsonrpc: '2.0', ...msg })));
    };
    const decoder = new FrameDecoder();
    child.once('error', reject);
    child.stdin.on('error', () => undefined);
    child.once('exit', (code, signal) => reject(new Error(`${executable} exited (${code ?? signal}) before its first call was answered`)));
    child.stdout.on('data', (c: Buffer) => {
      for (const body of decoder.push(c)) {
        const { id } = JSON.parse(body.toString('utf8')) as { id?: number };
        if (id === 0) {
          send({ method: 'initialized', params: {} });
          send({ id: 1, method: 'health/ping', params: {} });
        } else if (id === 1) {
          void settle()
            .then(() => rssOf(child.pid as number))
            .then(resolve, reject)
            .finally(() => child.stdin.end());
        }
      }
    });
    send({ id: 0, method: 'initialize', params });
  });
}

// An embedder's process as the README shows it: PluginHost with its defaults (no logger given), one VM of the
// shared example plugin created and started; it prints the plugin's pid, then waits for EOF to clean up.
const HOST_SCRIPT = `
import { PluginHost } from 'hvplug';
const [stateDir, runtimeDir, command, config] = process.argv.slice(1);
const host = new PluginHost({ stateDir, runtimeDir, plugins: [{ name: 'example-proprietary', command }] });
let pid;
host.on('plugin-started', (e) => (pid = e.pid));
const hv = await host.hypervisor('example-proprietary');
const vm = await hv.createVm({ config: JSON.parse(config) });
await vm.start();
process.stdout.write(JSON.stringify({ pid }) + '\\n');
process.stdin.resume();
process.stdin.once('end', async () => {
  await vm.stop({ force: true });
  await vm.delete();
  await host.close();
});
`;

/** host RSS + plugin RSS (MiB) with one VM running; the guest process the example plugin starts is not counted. */
function managementPlane(dir: string, executable: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const args = ['--input-type=module', '-e', HOST_SCRIPT, join(dir, 'state'), join(dir, 'run'), executable, JSON.stringify(BENCH_VM_CONFIG)];
    const child = spawn(process.execPath, args, { cwd: packageRoot(), stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, HVPLUG_CONFIG: '' } });
    let out = '';
    let measured = false;
    child.once('error', reject);
    child.stdin.on('error', () => undefined);
    child.once('exit', (code, signal) => {
      if (!measured) reject(new Error(`the host process exited (${code ?? signal}) before its VM ran`));
    });
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (measured || !out.includes('\n')) return;
      measured = true;
      const { pid } = JSON.parse(out) as { pid: number };
      void settle()
        .then(async () => (await rssOf(child.pid as number)) + (await rssOf(pid)))
        .then(resolve, reject)
        .finally(() => {
          child.stdin.end();
        });
    });
  });
}

/** Figure 9: what hvplug costs in memory, each beside the node process it is compared with. */
export const footprint: Figure = {
  id: 'footprint',
  title: '9 footprint',
  async run({ ws, cfg, log }) {
    const { reps } = cfg.footprint;
    const root = packageRoot();
    const method =
      `RSS from /proc. Import: node --expose-gc --input-type=module importing the specifier from the package root, ` +
      `RSS after gc() twice, minus the same process importing nothing. Plugin: its executable (launcher of its snapshot) ` +
      `after answering initialize and one health/ping, vs an idle node -e that read one line from stdin and answered it, ` +
      `each read ${SETTLE_MS} ms after its last work. Management plane: a node process embedding PluginHost (defaults, no ` +
      `logger given) with one example VM started: host + plugin RSS, guest process not counted, vs two idle nodes. ` +
      `${reps} reps alternating`;
    if (!hasProcfs()) return notMeasured('needs /proc (Linux) to read a process resident set', method);
    if (!existsSync(join(root, 'dist/src/core/index.js'))) return notMeasured('hvplug is not built (dist/): run npm run build', method);
    const plugin = builtPlugin(EXAMPLE);
    if (!plugin) return notMeasured('the example plugin (plugins/example-proprietary/dist) is not built: run npm run build', method);
    const dir = join(ws.dir, 'footprint');
    await mkdir(join(dir, 'state'), { recursive: true });
    await mkdir(join(dir, 'run'), { recursive: true });
    const params = initializeParams(dir);
    log(`footprint: ${reps} repetitions`);
    const runs = await alternate(reps, {
      bare: () => importRss(root),
      root: () => importRss(root, 'hvplug'),
      sdk: () => importRss(root, 'hvplug/plugin-sdk'),
      idle: () => idleNodeRss(),
      noop: () => pluginAfterFirstCall(ws.executable('noop-plugin'), params),
      example: () => pluginAfterFirstCall(plugin.executable, params),
      plane: () => managementPlane(dir, plugin.executable),
      twoIdle: async () => (await idleNodeRss()) + (await idleNodeRss()),
    });
    const added = (xs: number[]): number[] => xs.map((x, i) => x - (runs.bare[i] as number));
    const bare = measure('node importing nothing', 'MiB', runs.bare);
    const idle = measure('idle node, one line read', 'MiB', runs.idle);
    return {
      method,
      rows: [
        compare('import hvplug: RSS added', measure('hvplug', 'MiB', added(runs.root)), bare, { on: 'value', op: '<=', limit: 8, text: '≤ +8 MiB' }, { ratio: false }),
        compare('import hvplug/plugin-sdk: RSS added', measure('hvplug/plugin-sdk', 'MiB', added(runs.sdk)), bare, {
          on: 'value',
          op: '<=',
          limit: 6,
          text: '≤ +6 MiB',
        }, { ratio: false }),
        compare('no-op SDK plugin after its first call vs idle node', measure('no-op plugin', 'MiB', runs.noop), idle, {
          on: 'ratio',
          op: '<=',
          limit: 1.1,
          text: '≤ 1.1× idle node',
        }),
        compare('example plugin after its first call vs idle node', measure('example plugin', 'MiB', runs.example), idle, {
          on: 'ratio',
          op: '<=',
          limit: 1.1,
          text: '≤ 1.1× idle node',
        }),
        compare('management plane, 1 VM: host + plugin vs two idle nodes', measure('host + plugin', 'MiB', runs.plane), measure('two idle nodes', 'MiB', runs.twoIdle), {
          on: 'ratio',
          op: '<=',
          limit: 1.25,
          text: '≤ 1.25× two idle nodes',
        }),
      ],
      raw: { config: cfg.footprint, unit: 'MiB', settleMs: SETTLE_MS, perRep: runs },
    };
  },
};
