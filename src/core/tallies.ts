import { HvplugError } from '../errors/index.js';

/**
 * What a host counts as it works, kept whether or not anyone asks for metrics: a few map entries per call, no
 * library. `PluginHost.metrics()` loads prom-client only when an embedder asks, and its collectors read these at
 * scrape time (metrics-registry.ts), so that `import 'hvplug'` costs nothing more for them (issue 18's footprint).
 *
 * Every label value here comes from a bounded set: plugin names the host was configured with, method names from the
 * method table, error codes (a fixed set; an unknown wire code maps to one of them), VM statuses, migration outcomes. Nothing a plugin sends becomes a label.
 */

/** Latency buckets, seconds: a no-op call is ~0.1 ms, a pause ~ms, a create or a save up to minutes. */
export const CALL_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Migration downtime buckets, seconds: the guest's pause between source stop and destination run. */
export const DOWNTIME_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** One histogram's series: counts per bucket (not cumulative), their sum and count. */
export class BucketTally {
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    // One more than the bounds: the +Inf bucket.
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > (this.bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

/** A counter keyed by a tuple of label values. */
export class LabelledCounts<K extends readonly string[]> {
  private readonly byKey = new Map<string, { labels: K; value: number }>();

  inc(labels: K, by = 1): void {
    this.entry(labels).value += by;
  }

  /** The series of `labels`, made at 0 on first use: a caller that counts the same series often keeps it. */
  entry(labels: K): { labels: K; value: number } {
    // \0 cannot occur in any label value the host uses (see above), so the joined key is unambiguous.
    const key = labels.join('\0');
    let entry = this.byKey.get(key);
    if (!entry) this.byKey.set(key, (entry = { labels, value: 0 }));
    return entry;
  }

  entries(): IterableIterator<{ labels: K; value: number }> {
    return this.byKey.values();
  }
}

/** A histogram keyed by a tuple of label values. */
export class LabelledBuckets<K extends readonly string[]> {
  private readonly byKey = new Map<string, { labels: K; tally: BucketTally }>();

  constructor(readonly bounds: readonly number[]) {}

  observe(labels: K, value: number): void {
    this.tally(labels).observe(value);
  }

  /** The histogram of `labels`, made empty on first use. */
  tally(labels: K): BucketTally {
    const key = labels.join('\0');
    let entry = this.byKey.get(key);
    if (!entry) this.byKey.set(key, (entry = { labels, tally: new BucketTally(this.bounds) }));
    return entry.tally;
  }

  entries(): IterableIterator<{ labels: K; tally: BucketTally }> {
    return this.byKey.values();
  }
}

/** How a migration ended: `ok`, or the code of the error it failed with (outcomeOf gives it). */
export type MigrationOutcome = 'ok' | (string & {});

export class HostTallies {
  /** [plugin, method, outcome]: outcome is `ok` or the error's code (Timeout, VmNotFound... see outcomeOf). */
  readonly calls = new LabelledCounts<[string, string, string]>();
  /** [plugin, method], seconds from the caller's call to its answer (interceptors and the record write included). */
  readonly callSeconds = new LabelledBuckets<[string, string]>(CALL_BUCKETS);
  readonly restarts = new LabelledCounts<[string]>();
  readonly healthMisses = new LabelledCounts<[string]>();
  /** What a plugin sent that broke the protocol: a message dropped, or a stream it was killed for. */
  readonly protocolErrors = new LabelledCounts<[string]>();
  readonly migrations = new LabelledCounts<[string, MigrationOutcome]>();
  readonly migrationDowntime = new LabelledBuckets<[string]>(DOWNTIME_BUCKETS);

  /**
   * The series an answered call of a plugin's method counts in, by plugin then method: found without joining label
   * strings and hashing the result, which every call did.
   */
  private readonly answered = new Map<string, Map<string, { count: { value: number }; seconds: BucketTally }>>();

  /** A call through the shim ended: `error` undefined for an answer. */
  call(plugin: string, method: string, seconds: number, error: unknown): void {
    if (error !== undefined) {
      this.calls.inc([plugin, method, outcomeOf(error)]);
      this.callSeconds.observe([plugin, method], seconds);
      return;
    }
    let byMethod = this.answered.get(plugin);
    if (!byMethod) this.answered.set(plugin, (byMethod = new Map()));
    let series = byMethod.get(method);
    if (!series) {
      series = { count: this.calls.entry([plugin, method, outcomeOf(undefined)]), seconds: this.callSeconds.tally([plugin, method]) };
      byMethod.set(method, series);
    }
    series.count.value++;
    series.seconds.observe(seconds);
  }

  /**
   * A live migration ended, on the side that drove it (the source). `downtimeSeconds`: how long the guest did not
   * run (the VMM's own figure where it gives one), for a migration that completed; left out otherwise.
   */
  migration(plugin: string, outcome: MigrationOutcome, downtimeSeconds?: number): void {
    this.migrations.inc([plugin, outcome]);
    if (outcome === 'ok' && downtimeSeconds !== undefined && Number.isFinite(downtimeSeconds) && downtimeSeconds >= 0) {
      this.migrationDowntime.observe([plugin], downtimeSeconds);
    }
  }
}

/**
 * `ok`, or the typed name of what a call failed with: an HvplugError's code (InvalidState, Timeout, VmNotFound,
 * PluginExited...), `Error` for anything else. The code, not the class name: a bundle (the CLI's) minifies class names.
 */
export function outcomeOf(error: unknown): string {
  if (error === undefined) return 'ok';
  return error instanceof HvplugError ? error.code : 'Error';
}
