import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValueWithName } from 'prom-client';
import type { VmStatus } from 'hvplug/protocol';
import type { HostTallies, LabelledBuckets, LabelledCounts } from './tallies.js';

/**
 * The host's Prometheus registry: prom-client's formats and types over the tallies the host keeps anyway
 * (tallies.ts). Loaded only through PluginHost.metrics(), so that an embedder who never asks pays nothing for
 * prom-client. Each collector reads the tallies at scrape time; nothing is copied between scrapes.
 */

export interface MetricsSource {
  readonly tallies: HostTallies;
  /** VMs this host knows now, counted by plugin and status. */
  vmCounts(): Promise<{ plugin: string; status: VmStatus; count: number }[]>;
}

/**
 * A histogram whose series are a LabelledBuckets' counts. prom-client's Histogram can only be fed observations one
 * by one; these were counted before prom-client was loaded, so the series are answered as they stand.
 */
class TallyHistogram<L extends string> extends Histogram<L> {
  constructor(
    private readonly metricName: string,
    private readonly metricHelp: string,
    private readonly labelNamesInOrder: readonly L[],
    private readonly source: LabelledBuckets<readonly string[]>,
    registry: Registry,
  ) {
    super({ name: metricName, help: metricHelp, labelNames: labelNamesInOrder, buckets: [...source.bounds], registers: [registry] });
  }

  override get(): Promise<MetricObjectWithValues<MetricValueWithName<L>>> {
    return this.tallied();
  }

  /** prom-client's Registry prefers this to get() where a metric has it (its Histogram.get() calls it too). */
  getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<L>>> {
    return this.tallied();
  }

  private tallied(): Promise<MetricObjectWithValues<MetricValueWithName<L>>> {
    const name = this.metricName;
    type Labels = MetricValueWithName<L>['labels'];
    const values: MetricValueWithName<L>[] = [];
    for (const { labels, tally } of this.source.entries()) {
      const base: Partial<Record<L, string>> = {};
      this.labelNamesInOrder.forEach((l, i) => (base[l] = labels[i] as string));
      let acc = 0;
      tally.bounds.forEach((bound, i) => {
        acc += tally.counts[i] as number;
        values.push({ metricName: `${name}_bucket`, labels: { ...base, le: bound } as Labels, value: acc });
      });
      values.push({ metricName: `${name}_bucket`, labels: { ...base, le: '+Inf' } as Labels, value: tally.count });
      values.push({ metricName: `${name}_sum`, labels: base, value: tally.sum });
      values.push({ metricName: `${name}_count`, labels: base, value: tally.count });
    }
    // prom-client's types call `type` a numeric enum; its code (and the exposition format) uses the name.
    const type = 'histogram' as unknown as MetricObjectWithValues<MetricValueWithName<L>>['type'];
    return Promise.resolve({ name, help: this.metricHelp, type, aggregator: 'sum', values, collect: () => undefined });
  }
}

/** A counter whose series are a LabelledCounts' values at scrape time. */
function tallyCounter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[], source: LabelledCounts<readonly string[]>): void {
  new Counter<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const { labels, value } of source.entries()) {
        const l: Partial<Record<L, string>> = {};
        labelNames.forEach((n, i) => (l[n] = labels[i] as string));
        this.inc(l, value);
      }
    },
  });
}

/** A registry reading `source`; one per host (PluginHost.metrics() keeps it). */
export function hostRegistry(source: MetricsSource): Registry {
  const registry = new Registry();
  const t = source.tallies;
  tallyCounter(registry, 'hvplug_calls_total', 'Method calls through the host, by plugin, method and outcome (ok, or the code of the typed error the call failed with).', ['plugin', 'method', 'outcome'], t.calls);
  new TallyHistogram('hvplug_call_duration_seconds', "Method calls' latency as the caller sees it (validation, the plugin's answer and the record write), by plugin and method.", ['plugin', 'method'], t.callSeconds, registry);
  tallyCounter(registry, 'hvplug_plugin_restarts_total', 'Plugin processes restarted by the supervisor after a crash, a kill or missed health pings.', ['plugin'], t.restarts);
  tallyCounter(registry, 'hvplug_plugin_health_misses_total', 'Health pings a plugin did not answer in time (each one gets the process killed and restarted).', ['plugin'], t.healthMisses);
  tallyCounter(registry, 'hvplug_plugin_protocol_errors_total', 'Protocol breaches by a plugin: a message dropped (a malformed or stale event), or a stream it was killed for.', ['plugin'], t.protocolErrors);
  new Gauge<'plugin' | 'status'>({
    name: 'hvplug_vms',
    help: 'VMs this host drives or knows, by plugin and status.',
    labelNames: ['plugin', 'status'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { plugin, status, count } of await source.vmCounts()) this.set({ plugin, status }, count);
    },
  });
  tallyCounter(registry, 'hvplug_migrations_total', 'Live migrations driven from this host, by plugin and outcome (ok, or the code of the typed error).', ['plugin', 'outcome'], t.migrations);
  new TallyHistogram('hvplug_migration_downtime_seconds', "Completed live migrations' downtime: how long the guest did not run.", ['plugin'], t.migrationDowntime, registry);
  return registry;
}

export interface MetricsListen {
  /** Address to bind; default 127.0.0.1 (a scraper on another machine needs it said: 0.0.0.0 or an address). */
  host?: string;
  /** 0 picks a free port (see MetricsServer.url). */
  port: number;
}

export interface MetricsServer {
  /** Where to scrape: http://host:port/metrics. */
  readonly url: string;
  close(): Promise<void>;
}

/** Largest request head a scraper may send; node's own limit (16 KiB) would do, this one is said where it applies. */
const MAX_HEADER_BYTES = 8 * 1024;

/**
 * Serves `registry` on GET /metrics (and HEAD), plain HTTP as Prometheus scrapes by default; anything else is 404,
 * a method other than GET/HEAD 405. No request body is ever read.
 */
export async function serveRegistry(registry: Registry, listen: MetricsListen): Promise<MetricsServer> {
  const server: Server = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('only GET\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`cannot collect metrics: ${(err as Error).message}\n`),
    );
  });
  // A scraper that connects and says nothing is not kept forever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  const host = listen.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', () => undefined);
  const addr = server.address() as AddressInfo;
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shown}:${addr.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
