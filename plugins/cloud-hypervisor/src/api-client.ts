// Typed client of the Cloud Hypervisor REST API on its --api-socket, one method per endpoint the
// plugin uses. Response bodies are parsed with the zod schemas of api-types.ts; failures come back as
// ChApiError (the VMM answered with an error status), ChConnectionError (no complete answer: the VMM is
// gone, not listening, or too slow) or ChResponseError (an answer that breaks the API contract).
import type * as z from 'zod/mini';
import {
  PciDeviceInfo,
  VmCounters,
  VmInfo,
  VmmPingResponse,
  type DeviceConfig,
  type DiskConfig,
  type FsConfig,
  type NetConfig,
  type ReceiveMigrationData,
  type RestoreConfig,
  type SendMigrationData,
  type VmConfig,
  type VmRemoveDevice,
  type VmResize,
  type VmSnapshotConfig,
  type VsockConfig,
} from './api-types.js';
import { unixHttp, UnixHttpError } from './unix-http.js';

export const API_ROOT = '/api/v1';

/** Endpoint names as the document spells them (the path without /api/v1/). */
export type ChEndpoint =
  | 'vmm.ping' | 'vmm.shutdown' | 'vm.create' | 'vm.boot' | 'vm.pause' | 'vm.resume' | 'vm.shutdown' | 'vm.reboot'
  | 'vm.delete' | 'vm.info' | 'vm.counters' | 'vm.add-disk' | 'vm.add-net' | 'vm.add-fs' | 'vm.add-vsock'
  | 'vm.add-device' | 'vm.remove-device' | 'vm.resize' | 'vm.snapshot' | 'vm.restore' | 'vm.receive-migration'
  | 'vm.send-migration';

/**
 * The error messages of a VMM error body. Cloud Hypervisor answers with a JSON array of the error
 * chain (top error first); its HTTP layer answers unparsable requests with other text, kept whole.
 */
export function vmmMessages(body: string): string[] {
  try {
    const parsed: unknown = JSON.parse(body);
    if (Array.isArray(parsed) && parsed.every((m): m is string => typeof m === 'string')) return parsed;
  } catch {
    // Not JSON: fall through and keep the text.
  }
  return body.trim() === '' ? [] : [body];
}

/** The VMM answered with an error status. */
export class ChApiError extends Error {
  readonly messages: readonly string[];

  constructor(
    readonly endpoint: ChEndpoint,
    readonly status: number,
    /** The response body as sent by the VMM. */
    readonly body: string,
  ) {
    const messages = vmmMessages(body);
    super(`cloud-hypervisor ${endpoint} failed with HTTP ${status}${messages.length ? `: ${messages.join(': ')}` : ''}`);
    this.name = 'ChApiError';
    this.messages = messages;
  }
}

/** No complete answer: the socket is missing (ENOENT), nobody listens (ECONNREFUSED), the VMM went away (ECONNRESET/EPIPE) or did not answer in time (ETIMEDOUT). */
export class ChConnectionError extends Error {
  constructor(
    readonly endpoint: ChEndpoint,
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`cloud-hypervisor ${endpoint}: ${message}`, options);
    this.name = 'ChConnectionError';
  }
}

/** The VMM answered with a success status but a body the API document does not allow. */
export class ChResponseError extends Error {
  constructor(
    readonly endpoint: ChEndpoint,
    readonly status: number,
    readonly body: string,
    readonly issues: string,
  ) {
    super(`cloud-hypervisor ${endpoint} answered HTTP ${status} with a body outside the API contract: ${issues}`);
    this.name = 'ChResponseError';
  }
}

export interface CallOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

export interface ChClientOptions {
  readonly socketPath: string;
  /** Per-request deadline unless a call gives its own. */
  readonly timeoutMs?: number;
  readonly maxResponseBytes?: number;
}

type Method = 'GET' | 'PUT';

export class CloudHypervisorClient {
  readonly socketPath: string;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;

  constructor(opts: ChClientOptions) {
    this.socketPath = opts.socketPath;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.maxResponseBytes = opts.maxResponseBytes ?? 16 << 20;
  }

  /** One exchange; returns the status and body of a 2xx answer and throws for anything else. */
  private async exchange(endpoint: ChEndpoint, method: Method, body: unknown, opts: CallOptions | undefined): Promise<{ status: number; body: string }> {
    try {
      const res = await unixHttp({
        socketPath: this.socketPath,
        method,
        path: `${API_ROOT}/${endpoint}`,
        body: body === undefined ? undefined : JSON.stringify(body),
        timeoutMs: opts?.timeoutMs ?? this.timeoutMs,
        signal: opts?.signal,
        maxResponseBytes: this.maxResponseBytes,
      });
      if (res.status < 200 || res.status > 299) throw new ChApiError(endpoint, res.status, res.body);
      return res;
    } catch (e) {
      if (e instanceof UnixHttpError) throw new ChConnectionError(endpoint, e.code, e.message, { cause: e });
      throw e;
    }
  }

  private parse<T extends z.ZodMiniType>(endpoint: ChEndpoint, schema: T, res: { status: number; body: string }): z.output<T> {
    let value: unknown;
    try {
      value = JSON.parse(res.body);
    } catch (e) {
      throw new ChResponseError(endpoint, res.status, res.body, `not JSON (${String(e)})`);
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      throw new ChResponseError(endpoint, res.status, res.body, parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; '));
    }
    return parsed.data;
  }

  /** An action without a response body: any 2xx is success (vmm.shutdown answers 200 where the document says 204). */
  private async action(endpoint: ChEndpoint, body: unknown, opts: CallOptions | undefined): Promise<void> {
    await this.exchange(endpoint, 'PUT', body, opts);
  }

  /** vm.add-*: 200 with PciDeviceInfo when hot-plugged into a booted VM, 204 when cold-added to a created one. */
  private async add(endpoint: ChEndpoint, body: unknown, opts: CallOptions | undefined): Promise<PciDeviceInfo | undefined> {
    const res = await this.exchange(endpoint, 'PUT', body, opts);
    return res.status === 204 ? undefined : this.parse(endpoint, PciDeviceInfo, res);
  }

  async ping(opts?: CallOptions): Promise<VmmPingResponse> {
    return this.parse('vmm.ping', VmmPingResponse, await this.exchange('vmm.ping', 'GET', undefined, opts));
  }

  /** Shuts the VMM down (deleting its VM); the process exits and the socket goes away afterwards. */
  shutdownVmm(opts?: CallOptions): Promise<void> {
    return this.action('vmm.shutdown', undefined, opts);
  }

  createVm(config: VmConfig, opts?: CallOptions): Promise<void> {
    return this.action('vm.create', config, opts);
  }

  bootVm(opts?: CallOptions): Promise<void> {
    return this.action('vm.boot', undefined, opts);
  }

  pauseVm(opts?: CallOptions): Promise<void> {
    return this.action('vm.pause', undefined, opts);
  }

  resumeVm(opts?: CallOptions): Promise<void> {
    return this.action('vm.resume', undefined, opts);
  }

  shutdownVm(opts?: CallOptions): Promise<void> {
    return this.action('vm.shutdown', undefined, opts);
  }

  rebootVm(opts?: CallOptions): Promise<void> {
    return this.action('vm.reboot', undefined, opts);
  }

  deleteVm(opts?: CallOptions): Promise<void> {
    return this.action('vm.delete', undefined, opts);
  }

  async vmInfo(opts?: CallOptions): Promise<VmInfo> {
    return this.parse('vm.info', VmInfo, await this.exchange('vm.info', 'GET', undefined, opts));
  }

  async vmCounters(opts?: CallOptions): Promise<VmCounters> {
    return this.parse('vm.counters', VmCounters, await this.exchange('vm.counters', 'GET', undefined, opts));
  }

  addDisk(disk: DiskConfig, opts?: CallOptions): Promise<PciDeviceInfo | undefined> {
    return this.add('vm.add-disk', disk, opts);
  }

  addNet(net: NetConfig, opts?: CallOptions): Promise<PciDeviceInfo | undefined> {
    return this.add('vm.add-net', net, opts);
  }

  addFs(fs: FsConfig, opts?: CallOptions): Promise<PciDeviceInfo | undefined> {
    return this.add('vm.add-fs', fs, opts);
  }

  addVsock(vsock: VsockConfig, opts?: CallOptions): Promise<PciDeviceInfo | undefined> {
    return this.add('vm.add-vsock', vsock, opts);
  }

  /** A VFIO device by its sysfs path. */
  addDevice(device: DeviceConfig, opts?: CallOptions): Promise<PciDeviceInfo | undefined> {
    return this.add('vm.add-device', device, opts);
  }

  removeDevice(device: VmRemoveDevice, opts?: CallOptions): Promise<void> {
    return this.action('vm.remove-device', device, opts);
  }

  resizeVm(resize: VmResize, opts?: CallOptions): Promise<void> {
    return this.action('vm.resize', resize, opts);
  }

  /** The VM must be paused; destination_url is file://<existing directory>. */
  snapshotVm(snapshot: VmSnapshotConfig, opts?: CallOptions): Promise<void> {
    return this.action('vm.snapshot', snapshot, opts);
  }

  /** Only into a VMM with no VM created; the VM comes back Paused unless `resume` is set. */
  restoreVm(restore: RestoreConfig, opts?: CallOptions): Promise<void> {
    return this.action('vm.restore', restore, opts);
  }

  /**
   * Only into a VMM with no booted VM. The VMM answers once the migration has come in whole (204) or was
   * aborted: the call lasts as long as the migration, and the VMM takes no other request meanwhile.
   */
  receiveMigration(data: ReceiveMigrationData, opts?: CallOptions): Promise<void> {
    return this.action('vm.receive-migration', data, opts);
  }

  /** Hands the VM to the VMM's migration worker and is answered at once; the outcome is in the event monitor. */
  sendMigration(data: SendMigrationData, opts?: CallOptions): Promise<void> {
    return this.action('vm.send-migration', data, opts);
  }

  /**
   * Polls vmm.ping until the API answers, for a VMM that was just started: the socket appears
   * only once the VMM listens. Rejects with the last connection error when the deadline passes.
   */
  async waitReady(opts: { timeoutMs: number; intervalMs?: number; signal?: AbortSignal }): Promise<VmmPingResponse> {
    const deadline = Date.now() + opts.timeoutMs;
    for (;;) {
      try {
        return await this.ping({ signal: opts.signal, timeoutMs: Math.max(1, Math.min(this.timeoutMs, deadline - Date.now())) });
      } catch (e) {
        if (!(e instanceof ChConnectionError) || Date.now() + (opts.intervalMs ?? 20) >= deadline) throw e;
      }
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
    }
  }
}
