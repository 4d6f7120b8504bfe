import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ENV_ALLOW_LIST, PluginClient, PluginSpec } from 'hvplug';
import { PROTOCOL_VERSIONS, type InitializeParams } from 'hvplug/protocol';
import { encodeFrame, FrameDecoder } from 'hvplug/transport';
import { silentLogger } from '../clients.js';
import { alternate } from '../drivers.js';
import type { Figure } from '../figure.js';
import { notMeasured } from '../figure.js';
import { compare, measure, ratioText } from '../report.js';
import { builtPlugin } from '../setup.js';
import { BENCH_VM_CONFIG } from './scale.js';

/** The environment PluginHost gives a plugin, so the bare spawn sees what a hosted plugin sees. */
export function hostedEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ENV_ALLOW_LIST) {
    const v = process.env[name];
    if (v !== undefined) env[name] = v;
  }
  return env;
}

export function initializeParams(dir: string): InitializeParams {
  return {
    protocolVersions: [...PROTOCOL_VERSIONS],
    host: { name: 'hvplug-bench', version: '0' },
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logLevel: 'warn',
  };
}

type Argv = readonly [string, ...string[]];

/**
 * ms from spawn() until `arrived` finds on stdout what is waited for (it throws for an answer that is a
 * failure). The exit is awaited, so runs do not overlap, but not timed.
 */
function spawnUntil(
  argv: Argv,
  what: string,
  arrived: (chunk: Buffer) => boolean,
  input?: Buffer,
  writer?: (write: (b: Buffer) => void) => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'ignore'], env: hostedEnv() });
    let elapsed: number | undefined;
    child.stdout.on('data', (c: Buffer) => {
      if (elapsed !== undefined) return;
      try {
        if (!arrived(c)) return;
      } catch (err) {
        reject(err as Error);
        child.kill('SIGKILL');
        return;
      }
      elapsed = performance.now() - t0;
      // EOF makes a plugin exit.
      child.stdin.end();
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (elapsed !== undefined) resolve(elapsed);
      else reject(new Error(`${argv[0]} exited (${code ?? signal}) before ${what}`));
    });
    child.stdin.on('error', () => undefined);
    writer?.((b) => child.stdin.write(b));
    if (input) child.stdin.write(input);
  });
}

/**
 * ms from spawn() to the initialize answer on stdout: node starting, the plugin's code loading (from its
 * snapshot or its bundle), the SDK's handshake. The request is written at once (the pipe holds it until the
 * plugin reads).
 */
export function spawnToInitialize(argv: Argv, params: InitializeParams): Promise<number> {
  const decoder = new FrameDecoder();
  const answered = (c: Buffer): boolean => {
    for (const body of decoder.push(c)) {
      const msg = JSON.parse(body.toString('utf8')) as { id?: number; error?: { message: string } };
      if (msg.id !== 0) continue;
      if (msg.error) throw new Error(`initialize failed: ${msg.error.message}`);
      return true;
    }
    return false;
  };
  const request = encodeFrame(JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params }));
  return spawnUntil(argv, 'answering initialize', answered, request);
}

/**
 * ms from spawn() to the answer of the first VM call (vm/create of a VM that is not started), sent after
 * initialize was answered and `initialized` sent, as a host does.
 */
export function spawnToFirstVmCall(argv: Argv, params: InitializeParams, config: object): Promise<number> {
  const decoder = new FrameDecoder();
  const frame = (msg: object): Buffer => encodeFrame(JSON.stringify({ jsonrpc: '2.0', ...msg }));
  let stdin: ((b: Buffer) => void) | undefined;
  const answered = (c: Buffer): boolean => {
    for (const body of decoder.push(c)) {
      const msg = JSON.parse(body.toString('utf8')) as { id?: number; error?: { message: string } };
      if (msg.error) throw new Error(`call ${msg.id} failed: ${msg.error.message}`);
      if (msg.id === 0) {
        stdin?.(Buffer.concat([frame({ method: 'initialized', params: {} }), frame({ id: 1, method: 'vm/create', params: { vmId: `bench-${randomUUID()}`, config } })]));
      } else if (msg.id === 1) return true;
    }
    return false;
  };
  return spawnUntil(argv, 'answering its first VM call', answered, frame({ id: 0, method: 'initialize', params }), (write) => (stdin = write));
}

/** ms from spawn() to the first byte on stdout (the libraries floor writes one when it starts). */
export function spawnToFirstByte(argv: Argv): Promise<number> {
  return spawnUntil(argv, 'writing to stdout', () => true);
}

/** ms from spawn() of `node -e ''` to its exit. */
export function nodeNoop(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['-e', ''], { stdio: ['pipe', 'pipe', 'ignore'], env: hostedEnv() });
    child.once('error', reject);
    child.once('exit', () => resolve(performance.now() - t0));
  });
}

/** ms for PluginClient.start: the host's own path (spawn, executable lookup, shebang, handshake and `initialized`). */
async function viaClient(executable: string, dir: string): Promise<number> {
  const t0 = performance.now();
  const client = await PluginClient.start(PluginSpec.parse({ name: 'example-proprietary', command: executable }), {
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logger: silentLogger(),
    logLevel: 'warn',
    hostVersion: '0',
  });
  const ms = performance.now() - t0;
  await client.close();
  return ms;
}

/** Figure 3: plugin cold start. */
export const coldstart: Figure = {
  id: 'coldstart',
  title: '3 cold start',
  async run({ ws, cfg, log }) {
    const { warmup, reps } = cfg.coldstart;
    const plugin = builtPlugin('example-proprietary');
    const method =
      `spawn(the plugin's executable: the launcher of its startup snapshot) to the initialize answer read on stdout (request ` +
      `written at spawn), and to the answer of the first VM call (vm/create, sent after initialize was answered), vs spawn(node, ['-e', '']) to exit; same env as PluginHost gives; ${reps} reps alternating after ` +
      `${warmup} warm-up runs. Info rows: the floor (node from a snapshot holding only zod/mini, the one library an SDK plugin carries, to the ` +
      `byte it writes when it starts), the same plugin from its bundle (spawn(node, [bundle.mjs])), the no-op SDK plugin ` +
      `(snapshot), and PluginClient.start (spawn, launcher, handshake + initialized)`;
    if (!plugin) return notMeasured('the example plugin (plugins/example-proprietary/dist) is not built: run npm run build', method);
    const dir = join(ws.dir, 'coldstart');
    await mkdir(join(dir, 'state'), { recursive: true });
    await mkdir(join(dir, 'run'), { recursive: true });
    const params = initializeParams(dir);
    const variants = {
      example: () => spawnToInitialize([plugin.executable], params),
      firstVmCall: () => spawnToFirstVmCall([plugin.executable], params, BENCH_VM_CONFIG),
      node: () => nodeNoop(),
      floor: () => spawnToFirstByte([ws.executable('libraries-floor')]),
      bundle: () => spawnToInitialize([process.execPath, plugin.bundle], params),
      noop: () => spawnToInitialize([ws.executable('noop-plugin')], params),
      client: () => viaClient(plugin.executable, dir),
    };
    log(`cold start: ${warmup} warm-up runs, ${reps} repetitions`);
    await alternate(warmup, variants);
    const runs = await alternate(reps, variants);
    const nodeM = measure("node -e ''", 'ms', runs.node);
    const exampleM = measure('example', 'ms', runs.example);
    const floorM = measure('libraries floor', 'ms', runs.floor);
    const floor = compare('floor: the SDK libraries from a snapshot vs node', floorM, nodeM);
    const overFloor = compare('example plugin vs that floor', exampleM, floorM);
    // Said with this run's own numbers: what starting from a snapshot of the one library costs before any of hvplug runs.
    const why = (): string =>
      `node started from a snapshot that holds only zod (the SDK's one library) and writes a byte costs ` +
      `${ratioText(floor)} node -e '' on its own (V8 deserializing the snapshot), and the example plugin costs ` +
      `${ratioText(overFloor)} that floor (README, Performance: what was tried)`;
    return {
      method,
      rows: [
        compare('example plugin vs node', exampleM, nodeM, { on: 'ratio', op: '<=', limit: 1.25, text: "≤ 1.25× node -e ''" }, { why }),
        compare(
          'example plugin, spawn to first VM call (vm/create) answered, vs node',
          measure('first VM call', 'ms', runs.firstVmCall),
          nodeM,
          { on: 'ratio', op: '<=', limit: 1.4, text: "≤ 1.4× node -e ''" },
          { why },
        ),
        floor,
        overFloor,
        compare('example plugin from its bundle vs node', measure('bundle', 'ms', runs.bundle), nodeM),
        compare('no-op SDK plugin vs node', measure('no-op plugin', 'ms', runs.noop), nodeM),
        compare('PluginClient.start vs node', measure('PluginClient.start', 'ms', runs.client), nodeM),
      ],
      raw: { config: cfg.coldstart, unit: 'ms', plugin, perRep: runs },
    };
  },
};
