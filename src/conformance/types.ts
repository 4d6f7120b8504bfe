import type { Logger } from 'pino';
import type { Capabilities, PluginInfo, VmConfigInput } from 'hvplug/protocol';

export type CheckStatus = 'pass' | 'fail' | 'skipped';

/** One verdict of the suite. */
export interface CheckResult {
  /** Stable across runs and plugins, e.g. `method.vm/pause.valid`; what --only, --skip and expected failures name. */
  id: string;
  title: string;
  /** The first segment of the id: handshake, method, lifecycle, idempotency, device, events, ... */
  group: string;
  /** The part of the protocol the check holds the plugin to. */
  verifies: string;
  status: CheckStatus;
  /** Why it was skipped, e.g. `vm/pause not advertised`. */
  reason?: string;
  /** Why it failed. */
  message?: string;
  durationMs: number;
  /** Listed in the expected failures and did fail: reported, not counted against the run. */
  expectedFailure?: boolean;
}

export interface Summary {
  total: number;
  passed: number;
  /** Failures not listed as expected, including expected failures that passed. */
  failed: number;
  skipped: number;
  expectedFailures: number;
}

export interface Report {
  plugin: {
    command: string;
    args: string[];
    info?: PluginInfo;
    protocolVersion?: string;
  };
  capabilities?: Capabilities;
  startedAt: string;
  durationMs: number;
  checks: CheckResult[];
  summary: Summary;
  /** Expected-failure ids that name no check of this suite (a typo, or a check since renamed). */
  unknownExpectedFailures: string[];
  /** Every process the suite started or learned of (plugins, VMMs); all gone when the run returns. */
  pids: number[];
  /** The run was stopped before its last check (options.signal). */
  interrupted: boolean;
  /** True when nothing unexpected failed and the run was not interrupted: the exit code is 0 exactly then. */
  ok: boolean;
}

export type ProgressEvent =
  | { type: 'begin'; total: number }
  | { type: 'check-start'; id: string; title: string; index: number; total: number }
  | { type: 'check-end'; result: CheckResult; index: number; total: number }
  | { type: 'cleanup' };

export interface ConformanceOptions {
  /** The plugin executable, run without a shell; with `connect`, the address (what the report names). */
  command: string;
  /**
   * A listening plugin's address (unix:<path>, tls://<host>:<port>): connected to instead of spawned. It serves
   * one host at a time, so the checks that need a second connection or a process of their own are skipped.
   */
  connect?: string;
  /** For a tls:// address: the suite's certificate and key, and the CA of the plugin's certificate. */
  tls?: { cert: string; key: string; ca: string };
  args?: readonly string[];
  /** Variables set for the plugin, on top of the host's allow-list. */
  env?: Readonly<Record<string, string>>;
  /** Host variables the plugin may see beyond the allow-list. */
  envPassthrough?: readonly string[];
  /** SHA-256 pin of the executable, checked before every start as the host does. */
  sha256?: string;
  /** Run only checks whose id equals, or starts with `<entry>.`, one of these (or whose group is one). */
  only?: readonly string[];
  /** Leave out checks matched the same way. */
  skip?: readonly string[];
  /** Ids known to fail: their failure does not fail the run, and their passing does. */
  expectedFailures?: readonly string[];
  onProgress?: (event: ProgressEvent) => void;
  /** Stops the run early (Ctrl-C): the running check is failed, the rest left out, and cleanup still runs. */
  signal?: AbortSignal;
  /**
   * Merged into every VM config the suite creates: a real VMM needs a kernel and initrd (plus whatever
   * its plugin section asks for) to boot at all.
   */
  vmConfig?: VmConfigInput;
  /**
   * Merged over vmConfig for the guest power-off check: a config whose guest powers itself off within a
   * few seconds of boot (a guest program that ends, a script that calls poweroff). Without it that check
   * is skipped: the suite has no plugin-neutral way to make a guest end by itself.
   */
  powerOffConfig?: VmConfigInput;
  /**
   * Deadline of every protocol call the suite makes, overriding each method's own from the method table
   * (methods.ts timeoutMs), which applies when this is not given.
   */
  callTimeoutMs?: number;
  /** Deadline of one check, cleanup not included. */
  checkTimeoutMs?: number;
  /** How long a plugin may take to exit on stdin EOF, and a VMM's processes to go after vm/delete. */
  exitDeadlineMs?: number;
  /** Receives the plugins' stderr logs (default: discarded). */
  logger?: Logger;
  /** Parent of the suite's temporary directory (default: the OS temp dir). */
  workDir?: string;
}
