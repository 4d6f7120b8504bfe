import { PluginClient, ShimHypervisor, type ClientOptions, type ExitInfo, type PluginSpec } from 'hvplug';
import { SkipCheck } from './check.js';
import { ProcessLedger } from './processes.js';
import type { WireMonitor } from './wire-monitor.js';

/** One plugin process as the suite drives it: the real client and a shim over it. */
export interface Connection {
  /** `main#2`, `aux#5`: names the process in reports and wire records. */
  readonly tag: string;
  readonly client: PluginClient;
  readonly hv: ShimHypervisor;
}

/** A plugin process that went away without being asked to (crash, protocol error, failed start). */
export interface Death {
  tag: string;
  /** The check during which it happened. */
  check: string;
  error: Error;
}

export type BaseClientOptions = Omit<ClientOptions, 'trace' | 'protocolVersions'>;

/**
 * The plugin processes of one run. The main process serves most checks and is started anew when one
 * kills it, so a broken plugin fails its checks one by one instead of taking the rest of the run down.
 */
export class PluginSession {
  main: Connection | undefined;
  readonly deaths: Death[] = [];
  /** Every plugin process started, alive or not. */
  readonly processes = new ProcessLedger();
  private readonly open: Connection[] = [];
  private readonly closing = new Set<Connection>();
  private readonly noted = new Set<Connection>();
  private counter = 0;

  constructor(
    readonly spec: PluginSpec,
    private readonly base: BaseClientOptions,
    private readonly wire: WireMonitor,
    /** How long a process may take to exit after shutdown and exit before it is signalled. */
    private readonly graceMs = 2_000,
  ) {}

  nextTag(kind: string): string {
    return `${kind}#${++this.counter}`;
  }

  /** Starts a plugin process through the real host client, every message traced; `tag` for a caller that needs it first. */
  async connect(kind: string, opts: { protocolVersions?: readonly string[]; tag?: string } = {}): Promise<Connection> {
    if (this.spec.connect !== undefined && this.open.some((c) => c.client.alive)) {
      throw new SkipCheck(`the plugin listens at ${this.spec.connect} and serves one host at a time: this check needs a second connection`);
    }
    const tag = opts.tag ?? this.nextTag(kind);
    let client: PluginClient;
    try {
      client = await PluginClient.start(this.spec, { ...this.base, protocolVersions: opts.protocolVersions, trace: this.wire.tracer(tag) });
    } catch (err) {
      this.deaths.push({ tag, check: this.wire.check, error: err as Error });
      throw err;
    }
    if (client.processId !== undefined) this.processes.note(client.processId);
    const conn: Connection = { tag, client, hv: new ShimHypervisor(client) };
    this.open.push(conn);
    void client.exited.then(() => this.noteDeath(conn));
    return conn;
  }

  /** Records a death nobody asked for, once, whether found at its exit or by the next call that needs it. */
  private noteDeath(conn: Connection): void {
    if (this.closing.has(conn) || this.noted.has(conn)) return;
    this.noted.add(conn);
    // Blame the check that last spoke with the process: the one whose call it died on.
    const last = this.wire.records.findLast((r) => r.tag === conn.tag);
    this.deaths.push({ tag: conn.tag, check: last?.check ?? this.wire.check, error: conn.client.failure ?? new Error(`${conn.tag} exited`) });
  }

  /** The main process, started anew when the last one died. */
  async ensureMain(): Promise<Connection> {
    if (this.main?.client.alive) return this.main;
    if (this.main) await this.disconnect(this.main, Math.min(this.graceMs, 500));
    this.main = await this.connect('main');
    return this.main;
  }

  /** shutdown, exit, stdin EOF, then SIGTERM and SIGKILL: the host's own graceful-then-forced close. */
  async disconnect(conn: Connection, graceMs = this.graceMs): Promise<ExitInfo> {
    if (!conn.client.alive) this.noteDeath(conn);
    this.closing.add(conn);
    const i = this.open.indexOf(conn);
    if (i >= 0) this.open.splice(i, 1);
    conn.hv.dispose();
    return conn.client.close({ graceMs });
  }

  /** Closes every process still open, newest first. */
  async closeAll(): Promise<void> {
    for (const conn of [...this.open].reverse()) await this.disconnect(conn);
    this.main = undefined;
  }
}
