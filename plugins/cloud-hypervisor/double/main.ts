// Entry point of the cloud-hypervisor contract double: the real binary's command line and REST API on
// a unix socket, backed by a model of the VMM instead of KVM. Bundled to one .mjs by scripts/bundle.mjs.
import { appendFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Server } from 'node:http';
import { parseArgs, type ApiSocket, type DoubleOptions } from './cli.js';
import type { StatusMode } from './errors.js';
import { openEventSink, type EventSink } from './event-log.js';
import { createApiServer } from './http-api.js';
import { defaultSpecPath, loadOpenApi, SchemaSet } from './openapi.js';
import { Vmm } from './vmm.js';

/** The upstream build the vendored spec was taken from (spec/README.md), marked as the double's. */
const BUILD_VERSION = 'v53.0-246-gae44c2971';
const CRATE_VERSION = '54.0.0';
const VERSION_TEXT = `cloud-hypervisor ${BUILD_VERSION} (contract double)`;

function statusModeFromEnv(): StatusMode {
  const v = process.env.CH_DOUBLE_STATUS_CODES ?? 'documented';
  if (v === 'documented' || v === 'implemented') return v;
  throw new Error(`CH_DOUBLE_STATUS_CODES must be "documented" or "implemented", not ${JSON.stringify(v)}`);
}

function makeLogger(opts: DoubleOptions): (msg: string) => void {
  if (opts.verbosity === 0) return () => undefined;
  const start = process.hrtime.bigint();
  return (msg) => {
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    const line = `cloud-hypervisor (double): ${ms.toFixed(3)}ms: INFO -- ${msg}\n`;
    if (opts.logFile) appendFileSync(opts.logFile, line);
    else process.stderr.write(line);
  };
}

/** Refuses a socket another live VMM answers on; a stale one from a crashed run is removed. */
async function claimSocketPath(path: string): Promise<void> {
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new Error(`API socket ${path} is in use by another cloud-hypervisor instance`);
  await rm(path, { force: true });
}

function listen(server: Server, socket: ApiSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if ('fd' in socket) server.listen({ fd: socket.fd }, done);
    else server.listen(socket.path, done);
  });
}

async function run(opts: DoubleOptions): Promise<void> {
  // As the real binary: sockets and files it creates are only accessible by this user.
  process.umask(0o077);
  const log = makeLogger(opts);
  const statusMode = statusModeFromEnv();
  const specPath = defaultSpecPath();
  const schemas = new SchemaSet(loadOpenApi(specPath));
  log(`${VERSION_TEXT} starting; schemas from ${specPath}; status codes: ${statusMode}`);
  let events: EventSink;
  try {
    events = openEventSink(opts.eventMonitor);
  } catch (e) {
    throw new Error(`Error doing event monitor I/O: ${String(e)}`);
  }

  let finishing: Promise<void> | undefined;
  const finish = (code: number): Promise<void> => {
    finishing ??= (async () => {
      server.close();
      server.closeAllConnections();
      await vmm.dispose();
      if ('path' in opts.apiSocket) await rm(opts.apiSocket.path, { force: true });
      await events.close();
      log(`exiting with code ${code}`);
      process.exit(code);
    })();
    return finishing;
  };
  const shutdownVmm = (): void => {
    void vmm
      .run(() => vmm.shutdownVmm())
      .catch(() => undefined)
      .then(() => finish(0));
  };

  const vmm = new Vmm({
    events,
    noShutdown: opts.noShutdown,
    info: { buildVersion: `${BUILD_VERSION}-contract-double`, version: CRATE_VERSION, features: ['kvm'] },
    exitRequested: shutdownVmm,
    log,
  });
  const server = createApiServer({ vmm, schemas, statusMode, log, onVmmShutdown: () => void finish(0) });

  events.emit('vmm', 'starting');
  if ('path' in opts.apiSocket) await claimSocketPath(opts.apiSocket.path);
  await listen(server, opts.apiSocket);
  log(`API listening on ${'path' in opts.apiSocket ? opts.apiSocket.path : `fd ${opts.apiSocket.fd}`}`);
  // SIGTERM/SIGINT write the exit event: the VM is deleted and the VMM exits 0 (vmm/src/lib.rs).
  process.on('SIGTERM', shutdownVmm);
  process.on('SIGINT', shutdownVmm);
}

const parsed = parseArgs(process.argv.slice(2), VERSION_TEXT);
if (parsed.kind === 'print') {
  (parsed.code === 0 ? process.stdout : process.stderr).write(parsed.text);
  process.exitCode = parsed.code;
} else {
  run(parsed.options).catch((e: unknown) => {
    process.stderr.write(`Error: Cloud Hypervisor exited with the following chain of errors:\n  0: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
