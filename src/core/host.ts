import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import type { InitializeParams } from 'hvplug/protocol';
import { ShimHypervisor } from '../shim/shim.js';
import type { Interceptor } from '../shim/interceptors.js';
import { PluginCatalog, type DiscoveryOptions } from './discovery.js';
import { PluginClient } from './plugin-client.js';
import type { PluginSpec, PluginSpecInput } from './plugin-spec.js';
import { defaultRuntimeDir, defaultStateDir, ensurePrivateDir } from './paths.js';
import { HOST_VERSION } from './version.js';

export interface PluginHostOptions {
  /** VM records and plugins' persistent files. Default: HVPLUG_STATE_DIR, else the XDG state home. */
  stateDir?: string;
  /** Sockets, pidfiles, consoles. Default: XDG_RUNTIME_DIR/hvplug or a per-user tmp directory. */
  runtimeDir?: string;
  logger?: Logger;
  logLevel?: InitializeParams['logLevel'];
  maxMessageBytes?: number;
  /** Plugins given in code; they win over the config file and discovery. */
  plugins?: readonly PluginSpecInput[];
  /** A TOML file with [plugins.<name>] tables. */
  configFile?: string;
  /** Directories searched for hvplug-plugin-<name> executables before PATH. */
  pluginDirs?: readonly string[];
  interceptors?: readonly Interceptor[];
  /** The environment plugins' allow-listed variables are taken from (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

/**
 * The embedder's entry point: finds and starts plugins, and hands out a ShimHypervisor per plugin.
 */
export class PluginHost {
  readonly stateDir: string;
  readonly runtimeDir: string;
  readonly logger: Logger;
  readonly catalog: PluginCatalog;
  private readonly clients = new Map<string, Promise<{ client: PluginClient; shim: ShimHypervisor }>>();
  private readonly interceptors: Interceptor[];
  private closed = false;

  constructor(private readonly opts: PluginHostOptions = {}) {
    const env = opts.env ?? process.env;
    this.stateDir = opts.stateDir ?? defaultStateDir(env);
    this.runtimeDir = opts.runtimeDir ?? defaultRuntimeDir(env);
    this.logger = opts.logger ?? pino({ name: 'hvplug', level: opts.logLevel ?? 'info' }, pino.destination(2));
    const discovery: DiscoveryOptions = {
      specs: opts.plugins,
      configFile: opts.configFile ?? env.HVPLUG_CONFIG,
      pluginDirs: opts.pluginDirs,
      pathEnv: env.PATH,
    };
    this.catalog = new PluginCatalog(discovery);
    this.interceptors = [...(opts.interceptors ?? [])];
  }

  /** Adds a before/after hook around every method of every plugin started from now on. */
  use(interceptor: Interceptor): this {
    this.interceptors.push(interceptor);
    return this;
  }

  /** The hypervisor behind plugin `name`, starting the plugin on first use. */
  async hypervisor(name: string): Promise<ShimHypervisor> {
    if (this.closed) throw new Error('the host is closed');
    let entry = this.clients.get(name);
    if (!entry) {
      entry = this.start(await this.catalog.resolve(name));
      this.clients.set(name, entry);
      entry.catch(() => this.clients.delete(name));
    }
    return (await entry).shim;
  }

  /** The running process of plugin `name`, if started. */
  async client(name: string): Promise<PluginClient | undefined> {
    return (await this.clients.get(name))?.client;
  }

  private async start(spec: PluginSpec): Promise<{ client: PluginClient; shim: ShimHypervisor }> {
    const stateDir = await ensurePrivateDir(join(this.stateDir, 'plugins', spec.name));
    const runtimeDir = await ensurePrivateDir(join(this.runtimeDir, spec.name));
    const client = await PluginClient.start(spec, {
      stateDir,
      runtimeDir,
      logger: this.logger,
      logLevel: this.opts.logLevel ?? 'info',
      maxMessageBytes: this.opts.maxMessageBytes,
      hostEnv: this.opts.env,
      hostVersion: HOST_VERSION,
    });
    const shim = new ShimHypervisor(client, {
      interceptors: this.interceptors,
      onViolation: (err) => this.logger.warn({ plugin: spec.name, err: err.message }, 'plugin protocol violation'),
    });
    void client.exited.then(({ code, signal }) => {
      if (!this.closed) this.logger.warn({ plugin: spec.name, code, signal }, 'plugin exited');
      this.clients.delete(spec.name);
    });
    return { client, shim };
  }

  /** Shuts every plugin down (graceful, then forced). VMs keep running unless stopped first. */
  async close(): Promise<void> {
    this.closed = true;
    const entries = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(
      entries.map(async (e) => {
        const started = await e.catch(() => undefined);
        if (!started) return;
        started.shim.dispose();
        await started.client.close();
      }),
    );
  }
}
