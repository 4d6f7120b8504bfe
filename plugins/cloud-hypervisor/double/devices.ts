// The booted VM's devices (vmm/src/device_manager.rs): generated names, PCI slots, the device tree,
// counters, and the host resources the real device manager opens, so a request that names a missing
// disk image or socket fails here as it fails there.
import { constants } from 'node:fs';
import { access, rm } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { apiError, VM_ERROR, osErrorMessage, type Action, type ApiFailure } from './errors.js';
import { DEVICE_LISTS, numberAt, stringAt, type DeviceList, type Json, type JsonObject } from './config.js';

export type DeviceKind = DeviceList | 'vsock' | 'console' | 'rng';

export interface AttachedDevice {
  readonly id: string;
  readonly kind: DeviceKind;
  readonly bdf: string;
  readonly segment: number;
  readonly slot: number;
}

const U64_MAX = 18446744073709551615n;
const LATENCY_SCALE = 10000n;
const PCI_SLOTS = 32;

/** The initial counters of a virtio-block / virtio-net device (virtio-devices/src/{block,net}.rs). */
function initialCounters(kind: DeviceKind): Record<string, bigint> | undefined {
  if (kind === 'disks') {
    return {
      read_bytes: 0n, write_bytes: 0n, read_ops: 0n, write_ops: 0n,
      write_latency_min: U64_MAX, write_latency_max: U64_MAX, write_latency_avg: U64_MAX / LATENCY_SCALE,
      read_latency_min: U64_MAX, read_latency_max: U64_MAX, read_latency_avg: U64_MAX / LATENCY_SCALE,
    };
  }
  if (kind === 'net') return { rx_bytes: 0n, rx_frames: 0n, tx_bytes: 0n, tx_frames: 0n };
  return undefined;
}

function canConnect(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve();
    });
    s.once('error', reject);
  });
}

function listen(path: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((c) => c.destroy());
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

function bdfText(segment: number, slot: number): string {
  const hex = (n: number, w: number): string => n.toString(16).padStart(w, '0');
  return `${hex(segment, 4)}:00:${hex(slot, 2)}.0`;
}

export class DeviceManager {
  private counter = 0;
  private readonly attached = new Map<string, AttachedDevice>();
  private readonly counters = new Map<string, Record<string, bigint>>();
  private readonly listeners = new Map<string, { server: Server; path: string }>();
  private readonly usedSlots = new Map<number, Set<number>>();

  /** `bootIds` are the ids the config names itself (boot_id_list): generated names skip them. */
  constructor(private readonly bootIds: ReadonlySet<string>) {}

  /** next_device_name: prefix + a counter shared by all device kinds, skipping names in use. */
  private nextName(prefix: string): string {
    for (;;) {
      const name = `${prefix}${this.counter++}`;
      if (!this.bootIds.has(name) && !this.attached.has(name)) return name;
    }
  }

  private allocateSlot(segment: number, wanted: number | undefined, fail: () => ApiFailure): number {
    const used = this.usedSlots.get(segment) ?? new Set<number>([0]);
    this.usedSlots.set(segment, used);
    const slot = wanted ?? [...Array(PCI_SLOTS).keys()].find((s) => !used.has(s));
    if (slot === undefined || slot >= PCI_SLOTS || used.has(slot)) throw fail();
    used.add(slot);
    return slot;
  }

  /** Opens what the real device manager opens for this device; throws the failure it would report. */
  private async acquire(kind: DeviceKind, cfg: JsonObject, id: string, action: Action): Promise<void> {
    const fail =
      (what: string) =>
      (err: unknown): never => {
        throw apiError(action, [VM_ERROR.deviceManager, what, osErrorMessage(err)], 500);
      };
    const path = stringAt(cfg, 'path') ?? '';
    const socket = stringAt(cfg, 'socket') ?? '';
    // vhost-user backends in client mode (the default) are connected to; the VMM fails when nobody listens.
    const vhostSocket = cfg.vhost_user === true && stringAt(cfg, 'vhost_mode') !== 'Server' ? (stringAt(cfg, 'vhost_socket') ?? '') : undefined;
    switch (kind) {
      case 'disks':
        if (vhostSocket !== undefined) return canConnect(vhostSocket).catch(fail('Cannot create vhost-user-blk device'));
        return access(path, cfg.readonly === true ? constants.R_OK : constants.R_OK | constants.W_OK).catch(fail('Cannot open disk path'));
      case 'net':
        if (vhostSocket !== undefined) return canConnect(vhostSocket).catch(fail('Cannot create vhost-user-net device'));
        return;
      case 'fs':
        return canConnect(socket).catch(fail('Cannot create virtio-fs device'));
      case 'devices':
        return access(path).catch(fail('Cannot create a VFIO device'));
      case 'vsock': {
        const server = await listen(socket).catch(fail('Cannot create virtio-vsock backend'));
        this.listeners.set(id, { server, path: socket });
        return;
      }
      default:
        return;
    }
  }

  /** Creates a device for `cfg` (naming it when it has no id, as the real one writes the id back). */
  async attach(kind: DeviceKind, cfg: JsonObject, action: Action): Promise<AttachedDevice> {
    const prefix = kind === 'console' ? '__console' : kind === 'rng' ? '__rng' : kind === 'vsock' ? '_vsock' : DEVICE_LISTS[kind];
    const fixed = kind === 'console' || kind === 'rng';
    const id = stringAt(cfg, 'id') ?? (fixed ? prefix : this.nextName(prefix));
    const segment = numberAt(cfg, 'pci_segment') ?? 0;
    const slotFailure = (): ApiFailure => apiError(action, [VM_ERROR.deviceManager, 'Failed to find an available PCI device ID'], 500);
    const used = this.usedSlots.get(segment);
    const wanted = numberAt(cfg, 'pci_device_id');
    if (wanted !== undefined && used?.has(wanted)) throw slotFailure();
    await this.acquire(kind, cfg, id, action);
    let slot: number;
    try {
      slot = this.allocateSlot(segment, wanted, slotFailure);
    } catch (e) {
      await this.releaseResources(id);
      throw e;
    }
    if (!fixed) cfg.id = id;
    const device: AttachedDevice = { id, kind, bdf: bdfText(segment, slot), segment, slot };
    this.attached.set(id, device);
    const counters = initialCounters(kind);
    if (counters) this.counters.set(id, counters);
    return device;
  }

  private async releaseResources(id: string): Promise<void> {
    const l = this.listeners.get(id);
    if (!l) return;
    this.listeners.delete(id);
    await new Promise<void>((resolve) => l.server.close(() => resolve()));
    // The vsock device removes its socket on drop (virtio-devices/src/vsock/device.rs).
    await rm(l.path, { force: true });
  }

  async detach(id: string): Promise<AttachedDevice | undefined> {
    const device = this.attached.get(id);
    if (!device) return undefined;
    this.attached.delete(id);
    this.counters.delete(id);
    this.usedSlots.get(device.segment)?.delete(device.slot);
    await this.releaseResources(id);
    return device;
  }

  async releaseAll(): Promise<void> {
    for (const id of [...this.attached.keys()]) await this.detach(id);
  }

  get(id: string): AttachedDevice | undefined {
    return this.attached.get(id);
  }

  /** device_tree of VmInfo: DeviceNode {id, resources, parent, children, pci_bdf}. */
  tree(): Record<string, Json> {
    return Object.fromEntries(
      [...this.attached.values()].map((d) => [d.id, { id: d.id, resources: [], parent: null, children: [], pci_bdf: d.bdf }]),
    );
  }

  /** VmCounters as JSON text: u64 counters can exceed what a JS number holds, so they are written as digits. */
  countersJson(): string {
    const devices = [...this.counters.entries()].map(([id, c]) => {
      const fields = Object.entries(c).map(([k, v]) => `${JSON.stringify(k)}:${v.toString()}`);
      return `${JSON.stringify(id)}:{${fields.join(',')}}`;
    });
    return `{${devices.join(',')}}`;
  }
}
