// zod schemas for the parts of the Cloud Hypervisor REST API (spec/openapi.yaml, components.schemas)
// the plugin sends and reads. Objects are loose: a newer VMM's extra fields survive a round trip through
// vm.info instead of being dropped. plugins/cloud-hypervisor/test/unit/cloud-hypervisor-spec.test.ts checks every schema here against
// the vendored document (property names, types, enums, required fields), so drift fails a test.
import * as z from 'zod/mini';

/** u64 counters can exceed 2^53; JSON.parse rounds them, which is acceptable for counters but not a reason to reject. */
const u64 = z.number().check(z.refine(Number.isInteger, 'expected an integer'));

export const VmmPingResponse = z.looseObject({
  build_version: z.optional(z.string()),
  version: z.string(),
  pid: z.optional(z.int()),
  features: z.optional(z.array(z.string())),
});
export type VmmPingResponse = z.output<typeof VmmPingResponse>;

export const VmState = z.enum(['Created', 'Running', 'Shutdown', 'Paused', 'BreakPoint']);
export type VmState = z.output<typeof VmState>;

export const PayloadConfig = z.looseObject({
  firmware: z.optional(z.string()),
  kernel: z.optional(z.string()),
  cmdline: z.optional(z.string()),
  initramfs: z.optional(z.string()),
  igvm: z.optional(z.string()),
  host_data: z.optional(z.string()),
});

export const CpuTopology = z.looseObject({
  threads_per_core: z.optional(z.int()),
  cores_per_die: z.optional(z.int()),
  dies_per_package: z.optional(z.int()),
  packages: z.optional(z.int()),
});

export const CpusConfig = z.looseObject({
  boot_vcpus: z.int().check(z.minimum(1)),
  max_vcpus: z.int().check(z.minimum(1)),
  topology: z.optional(CpuTopology),
  kvm_hyperv: z.optional(z.boolean()),
  max_phys_bits: z.optional(z.int()),
  nested: z.optional(z.boolean()),
});

export const MemoryConfig = z.looseObject({
  size: z.int(),
  hotplug_size: z.optional(z.int()),
  hotplugged_size: z.optional(z.int()),
  mergeable: z.optional(z.boolean()),
  hotplug_method: z.optional(z.string()),
  shared: z.optional(z.boolean()),
  hugepages: z.optional(z.boolean()),
  hugepage_size: z.optional(z.int()),
  prefault: z.optional(z.boolean()),
  reserve: z.optional(z.boolean()),
  thp: z.optional(z.boolean()),
});

export const TokenBucket = z.looseObject({
  size: z.int().check(z.minimum(0)),
  one_time_burst: z.optional(z.int().check(z.minimum(0))),
  refill_time: z.int().check(z.minimum(0)),
});

export const RateLimiterConfig = z.looseObject({
  bandwidth: z.optional(TokenBucket),
  ops: z.optional(TokenBucket),
});

export const DiskConfig = z.looseObject({
  path: z.optional(z.string()),
  readonly: z.optional(z.boolean()),
  direct: z.optional(z.boolean()),
  iommu: z.optional(z.boolean()),
  num_queues: z.optional(z.int()),
  queue_size: z.optional(z.int()),
  vhost_user: z.optional(z.boolean()),
  vhost_socket: z.optional(z.string()),
  rate_limiter_config: z.optional(RateLimiterConfig),
  pci_segment: z.optional(z.int()),
  pci_device_id: z.optional(z.int()),
  id: z.optional(z.string()),
  serial: z.optional(z.string()),
  rate_limit_group: z.optional(z.string()),
  image_type: z.optional(z.enum(['FixedVhd', 'Qcow2', 'Raw', 'Vhdx', 'Unknown'])),
});
export type DiskConfig = z.input<typeof DiskConfig>;

export const NetConfig = z.looseObject({
  tap: z.optional(z.string()),
  ip: z.optional(z.string()),
  mask: z.optional(z.string()),
  mac: z.optional(z.string()),
  host_mac: z.optional(z.string()),
  mtu: z.optional(z.int()),
  iommu: z.optional(z.boolean()),
  num_queues: z.optional(z.int()),
  queue_size: z.optional(z.int()),
  vhost_user: z.optional(z.boolean()),
  vhost_socket: z.optional(z.string()),
  vhost_mode: z.optional(z.string()),
  id: z.optional(z.string()),
  pci_segment: z.optional(z.int()),
  pci_device_id: z.optional(z.int()),
  rate_limiter_config: z.optional(RateLimiterConfig),
});
export type NetConfig = z.input<typeof NetConfig>;

export const RngConfig = z.looseObject({ src: z.string(), id: z.optional(z.string()), iommu: z.optional(z.boolean()) });

export const BalloonConfig = z.looseObject({
  size: z.int(),
  id: z.optional(z.string()),
  deflate_on_oom: z.optional(z.boolean()),
  free_page_reporting: z.optional(z.boolean()),
});

export const FsConfig = z.looseObject({
  tag: z.string(),
  socket: z.string(),
  num_queues: z.int(),
  queue_size: z.int(),
  pci_segment: z.optional(z.int()),
  pci_device_id: z.optional(z.int()),
  id: z.optional(z.string()),
});
export type FsConfig = z.input<typeof FsConfig>;

export const ConsoleMode = z.enum(['Off', 'Pty', 'Tty', 'File', 'Socket', 'Null']);

export const ConsoleConfig = z.looseObject({
  mode: ConsoleMode,
  file: z.optional(z.string()),
  socket: z.optional(z.string()),
  iommu: z.optional(z.boolean()),
  id: z.optional(z.string()),
});

export const SerialConfig = z.looseObject({
  mode: ConsoleMode,
  file: z.optional(z.string()),
  socket: z.optional(z.string()),
});

export const DeviceConfig = z.looseObject({
  path: z.optional(z.string()),
  iommu: z.optional(z.boolean()),
  pci_segment: z.optional(z.int()),
  pci_device_id: z.optional(z.int()),
  id: z.optional(z.string()),
});
export type DeviceConfig = z.input<typeof DeviceConfig>;

export const VsockConfig = z.looseObject({
  cid: z.int().check(z.minimum(3)),
  socket: z.string(),
  iommu: z.optional(z.boolean()),
  pci_segment: z.optional(z.int()),
  pci_device_id: z.optional(z.int()),
  id: z.optional(z.string()),
});
export type VsockConfig = z.input<typeof VsockConfig>;

export const VmConfig = z.looseObject({
  cpus: z.optional(CpusConfig),
  memory: z.optional(MemoryConfig),
  payload: PayloadConfig,
  disks: z.optional(z.array(DiskConfig)),
  net: z.optional(z.array(NetConfig)),
  rng: z.optional(RngConfig),
  balloon: z.optional(BalloonConfig),
  fs: z.optional(z.array(FsConfig)),
  serial: z.optional(SerialConfig),
  console: z.optional(ConsoleConfig),
  devices: z.optional(z.array(DeviceConfig)),
  vsock: z.optional(VsockConfig),
  iommu: z.optional(z.boolean()),
  watchdog: z.optional(z.boolean()),
  pvpanic: z.optional(z.boolean()),
  landlock_enable: z.optional(z.boolean()),
});
export type VmConfig = z.input<typeof VmConfig>;

export const DeviceNode = z.looseObject({
  id: z.optional(z.string()),
  resources: z.optional(z.array(z.record(z.string(), z.unknown()))),
  children: z.optional(z.array(z.string())),
  pci_bdf: z.optional(z.string()),
});

export const VmInfo = z.looseObject({
  config: VmConfig,
  state: VmState,
  memory_actual_size: z.optional(z.int()),
  device_tree: z.optional(z.record(z.string(), DeviceNode)),
});
export type VmInfo = z.output<typeof VmInfo>;

export const VmCounters = z.record(z.string(), z.record(z.string(), u64));
export type VmCounters = z.output<typeof VmCounters>;

export const PciDeviceInfo = z.looseObject({ id: z.string(), bdf: z.string() });
export type PciDeviceInfo = z.output<typeof PciDeviceInfo>;

export const VmResize = z.looseObject({
  desired_vcpus: z.optional(z.int().check(z.minimum(1))),
  desired_ram: z.optional(z.int()),
  desired_balloon: z.optional(z.int()),
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
  prefault: z.optional(z.boolean()),
  memory_restore_mode: z.optional(z.enum(['Copy', 'OnDemand'])),
  resume: z.optional(z.boolean()),
});
export type RestoreConfig = z.input<typeof RestoreConfig>;

export const MigrationMode = z.enum(['Precopy', 'Postcopy']);

export const ReceiveMigrationData = z.looseObject({
  receiver_url: z.string(),
  tls_dir: z.optional(z.string()),
  memory_mode: z.optional(MigrationMode),
  zone_updates: z.optional(z.array(z.looseObject({ id: z.string().check(z.minLength(1)), host_numa_node: z.int().check(z.minimum(0)) }))),
});
export type ReceiveMigrationData = z.input<typeof ReceiveMigrationData>;

export const TimeoutStrategy = z.enum(['Cancel', 'Ignore']);

export const SendMigrationData = z.looseObject({
  destination_url: z.string(),
  /** Memory goes as file descriptors (SCM_RIGHTS) instead of bytes: unix URLs only, shared or hugepage memory only. */
  local: z.optional(z.boolean()),
  downtime_ms: z.optional(z.int().check(z.minimum(1))),
  timeout_s: z.optional(z.int().check(z.minimum(1))),
  timeout_strategy: z.optional(TimeoutStrategy),
  connections: z.optional(z.int().check(z.minimum(1), z.maximum(128))),
  tls_dir: z.optional(z.string()),
  memory_mode: z.optional(MigrationMode),
});
export type SendMigrationData = z.input<typeof SendMigrationData>;

/** The schemas above by their OpenAPI component name, for the drift test. */
export const COMPONENTS = {
  VmmPingResponse, VmState, PayloadConfig, CpuTopology, CpusConfig, MemoryConfig, TokenBucket, RateLimiterConfig,
  DiskConfig, NetConfig, RngConfig, BalloonConfig, FsConfig, ConsoleMode, ConsoleConfig, SerialConfig, DeviceConfig,
  VsockConfig, VmConfig, DeviceNode, VmInfo, VmCounters, PciDeviceInfo, VmResize, VmRemoveDevice, VmSnapshotConfig,
  RestoreConfig, MigrationMode, ReceiveMigrationData, TimeoutStrategy, SendMigrationData,
} as const;
