// zod schemas for the parts of the Cloud Hypervisor REST API (spec/openapi.yaml, components.schemas)
// the plugin sends and reads. Objects are loose: a newer VMM's extra fields survive a round trip through
// vm.info instead of being dropped. plugins/cloud-hypervisor/test/unit/cloud-hypervisor-spec.test.ts checks every schema here against
// the vendored document (property names, types, enums, required fields), so drift fails a test.
import { z } from 'zod';

/** u64 counters can exceed 2^53; JSON.parse rounds them, which is acceptable for counters but not a reason to reject. */
const u64 = z.number().refine(Number.isInteger, 'expected an integer');

export const VmmPingResponse = z.looseObject({
  build_version: z.string().optional(),
  version: z.string(),
  pid: z.int().optional(),
  features: z.array(z.string()).optional(),
});
export type VmmPingResponse = z.output<typeof VmmPingResponse>;

export const VmState = z.enum(['Created', 'Running', 'Shutdown', 'Paused', 'BreakPoint']);
export type VmState = z.output<typeof VmState>;

export const PayloadConfig = z.looseObject({
  firmware: z.string().optional(),
  kernel: z.string().optional(),
  cmdline: z.string().optional(),
  initramfs: z.string().optional(),
  igvm: z.string().optional(),
  host_data: z.string().optional(),
});

export const CpuTopology = z.looseObject({
  threads_per_core: z.int().optional(),
  cores_per_die: z.int().optional(),
  dies_per_package: z.int().optional(),
  packages: z.int().optional(),
});

export const CpusConfig = z.looseObject({
  boot_vcpus: z.int().min(1),
  max_vcpus: z.int().min(1),
  topology: CpuTopology.optional(),
  kvm_hyperv: z.boolean().optional(),
  max_phys_bits: z.int().optional(),
  nested: z.boolean().optional(),
});

export const MemoryConfig = z.looseObject({
  size: z.int(),
  hotplug_size: z.int().optional(),
  hotplugged_size: z.int().optional(),
  mergeable: z.boolean().optional(),
  hotplug_method: z.string().optional(),
  shared: z.boolean().optional(),
  hugepages: z.boolean().optional(),
  hugepage_size: z.int().optional(),
  prefault: z.boolean().optional(),
  reserve: z.boolean().optional(),
  thp: z.boolean().optional(),
});

export const TokenBucket = z.looseObject({
  size: z.int().min(0),
  one_time_burst: z.int().min(0).optional(),
  refill_time: z.int().min(0),
});

export const RateLimiterConfig = z.looseObject({
  bandwidth: TokenBucket.optional(),
  ops: TokenBucket.optional(),
});

export const DiskConfig = z.looseObject({
  path: z.string().optional(),
  readonly: z.boolean().optional(),
  direct: z.boolean().optional(),
  iommu: z.boolean().optional(),
  num_queues: z.int().optional(),
  queue_size: z.int().optional(),
  vhost_user: z.boolean().optional(),
  vhost_socket: z.string().optional(),
  rate_limiter_config: RateLimiterConfig.optional(),
  pci_segment: z.int().optional(),
  pci_device_id: z.int().optional(),
  id: z.string().optional(),
  serial: z.string().optional(),
  rate_limit_group: z.string().optional(),
  image_type: z.enum(['FixedVhd', 'Qcow2', 'Raw', 'Vhdx', 'Unknown']).optional(),
});
export type DiskConfig = z.input<typeof DiskConfig>;

export const NetConfig = z.looseObject({
  tap: z.string().optional(),
  ip: z.string().optional(),
  mask: z.string().optional(),
  mac: z.string().optional(),
  host_mac: z.string().optional(),
  mtu: z.int().optional(),
  iommu: z.boolean().optional(),
  num_queues: z.int().optional(),
  queue_size: z.int().optional(),
  vhost_user: z.boolean().optional(),
  vhost_socket: z.string().optional(),
  vhost_mode: z.string().optional(),
  id: z.string().optional(),
  pci_segment: z.int().optional(),
  pci_device_id: z.int().optional(),
  rate_limiter_config: RateLimiterConfig.optional(),
});
export type NetConfig = z.input<typeof NetConfig>;

export const RngConfig = z.looseObject({ src: z.string(), id: z.string().optional(), iommu: z.boolean().optional() });

export const BalloonConfig = z.looseObject({
  size: z.int(),
  id: z.string().optional(),
  deflate_on_oom: z.boolean().optional(),
  free_page_reporting: z.boolean().optional(),
});

export const FsConfig = z.looseObject({
  tag: z.string(),
  socket: z.string(),
  num_queues: z.int(),
  queue_size: z.int(),
  pci_segment: z.int().optional(),
  pci_device_id: z.int().optional(),
  id: z.string().optional(),
});
export type FsConfig = z.input<typeof FsConfig>;

export const ConsoleMode = z.enum(['Off', 'Pty', 'Tty', 'File', 'Socket', 'Null']);

export const ConsoleConfig = z.looseObject({
  mode: ConsoleMode,
  file: z.string().optional(),
  socket: z.string().optional(),
  iommu: z.boolean().optional(),
  id: z.string().optional(),
});

export const SerialConfig = z.looseObject({
  mode: ConsoleMode,
  file: z.string().optional(),
  socket: z.string().optional(),
});

export const DeviceConfig = z.looseObject({
  path: z.string().optional(),
  iommu: z.boolean().optional(),
  pci_segment: z.int().optional(),
  pci_device_id: z.int().optional(),
  id: z.string().optional(),
});
export type DeviceConfig = z.input<typeof DeviceConfig>;

export const VsockConfig = z.looseObject({
  cid: z.int().min(3),
  socket: z.string(),
  iommu: z.boolean().optional(),
  pci_segment: z.int().optional(),
  pci_device_id: z.int().optional(),
  id: z.string().optional(),
});
export type VsockConfig = z.input<typeof VsockConfig>;

export const VmConfig = z.looseObject({
  cpus: CpusConfig.optional(),
  memory: MemoryConfig.optional(),
  payload: PayloadConfig,
  disks: z.array(DiskConfig).optional(),
  net: z.array(NetConfig).optional(),
  rng: RngConfig.optional(),
  balloon: BalloonConfig.optional(),
  fs: z.array(FsConfig).optional(),
  serial: SerialConfig.optional(),
  console: ConsoleConfig.optional(),
  devices: z.array(DeviceConfig).optional(),
  vsock: VsockConfig.optional(),
  iommu: z.boolean().optional(),
  watchdog: z.boolean().optional(),
  pvpanic: z.boolean().optional(),
  landlock_enable: z.boolean().optional(),
});
export type VmConfig = z.input<typeof VmConfig>;

export const DeviceNode = z.looseObject({
  id: z.string().optional(),
  resources: z.array(z.record(z.string(), z.unknown())).optional(),
  children: z.array(z.string()).optional(),
  pci_bdf: z.string().optional(),
});

export const VmInfo = z.looseObject({
  config: VmConfig,
  state: VmState,
  memory_actual_size: z.int().optional(),
  device_tree: z.record(z.string(), DeviceNode).optional(),
});
export type VmInfo = z.output<typeof VmInfo>;

export const VmCounters = z.record(z.string(), z.record(z.string(), u64));
export type VmCounters = z.output<typeof VmCounters>;

export const PciDeviceInfo = z.looseObject({ id: z.string(), bdf: z.string() });
export type PciDeviceInfo = z.output<typeof PciDeviceInfo>;

export const VmResize = z.looseObject({
  desired_vcpus: z.int().min(1).optional(),
  desired_ram: z.int().optional(),
  desired_balloon: z.int().optional(),
});
export type VmResize = z.input<typeof VmResize>;

/** `id` is a plain String in the Rust struct (VmRemoveDeviceData): the VMM answers 400 without it. */
export const VmRemoveDevice = z.looseObject({ id: z.string() });
export type VmRemoveDevice = z.input<typeof VmRemoveDevice>;

/** `destination_url` is a plain String in the Rust struct, so required although the document leaves it optional. */
export const VmSnapshotConfig = z.looseObject({ destination_url: z.string() });
export type VmSnapshotConfig = z.input<typeof VmSnapshotConfig>;

export const RestoreConfig = z.looseObject({
  source_url: z.string(),
  prefault: z.boolean().optional(),
  memory_restore_mode: z.enum(['Copy', 'OnDemand']).optional(),
  resume: z.boolean().optional(),
});
export type RestoreConfig = z.input<typeof RestoreConfig>;

export const MigrationMode = z.enum(['Precopy', 'Postcopy']);

export const ReceiveMigrationData = z.looseObject({
  receiver_url: z.string(),
  tls_dir: z.string().optional(),
  memory_mode: MigrationMode.optional(),
  zone_updates: z.array(z.looseObject({ id: z.string().min(1), host_numa_node: z.int().min(0) })).optional(),
});
export type ReceiveMigrationData = z.input<typeof ReceiveMigrationData>;

export const TimeoutStrategy = z.enum(['Cancel', 'Ignore']);

export const SendMigrationData = z.looseObject({
  destination_url: z.string(),
  /** Memory goes as file descriptors (SCM_RIGHTS) instead of bytes: unix URLs only, shared or hugepage memory only. */
  local: z.boolean().optional(),
  downtime_ms: z.int().min(1).optional(),
  timeout_s: z.int().min(1).optional(),
  timeout_strategy: TimeoutStrategy.optional(),
  connections: z.int().min(1).max(128).optional(),
  tls_dir: z.string().optional(),
  memory_mode: MigrationMode.optional(),
});
export type SendMigrationData = z.input<typeof SendMigrationData>;

/** The schemas above by their OpenAPI component name, for the drift test. */
export const COMPONENTS = {
  VmmPingResponse, VmState, PayloadConfig, CpuTopology, CpusConfig, MemoryConfig, TokenBucket, RateLimiterConfig,
  DiskConfig, NetConfig, RngConfig, BalloonConfig, FsConfig, ConsoleMode, ConsoleConfig, SerialConfig, DeviceConfig,
  VsockConfig, VmConfig, DeviceNode, VmInfo, VmCounters, PciDeviceInfo, VmResize, VmRemoveDevice, VmSnapshotConfig,
  RestoreConfig, MigrationMode, ReceiveMigrationData, TimeoutStrategy, SendMigrationData,
} as const;
