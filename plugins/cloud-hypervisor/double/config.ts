// VmConfig bookkeeping the way vmm/src/config.rs and vmm/src/lib.rs do it: device lists, identifier
// validation (VmConfig::validate_identifier), cold add/remove (add_to_config, VmConfig::remove_device).
import { ApiFailure, ACTION_MESSAGE, VM_ERROR, type Action } from './errors.js';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** VmConfig fields holding device lists, with the prefix the device manager names their devices by. */
export const DEVICE_LISTS = {
  disks: '_disk',
  net: '_net',
  fs: '_fs',
  pmem: '_pmem',
  devices: '_vfio',
  vdpa: '_vdpa',
  user_devices: '_vfio_user',
  generic_vhost_user: '_generic_vhost_user',
} as const;

export type DeviceList = keyof typeof DEVICE_LISTS;

/** Every device config in creation order (block, net, fs, pmem, vsock, vdpa, then VFIO, as make_virtio_devices). */
export function deviceEntries(config: JsonObject): { list: DeviceList | 'vsock'; cfg: JsonObject }[] {
  const out: { list: DeviceList | 'vsock'; cfg: JsonObject }[] = [];
  const take = (list: DeviceList): void => {
    const items = config[list];
    if (Array.isArray(items)) for (const cfg of items) if (isObject(cfg)) out.push({ list, cfg });
  };
  take('disks');
  take('net');
  take('generic_vhost_user');
  take('fs');
  take('pmem');
  if (isObject(config.vsock)) out.push({ list: 'vsock', cfg: config.vsock });
  take('vdpa');
  take('devices');
  take('user_devices');
  return out;
}

function configValidation(action: Action, message: string, status: number): ApiFailure {
  return new ApiFailure(['Error from API', ACTION_MESSAGE[action], VM_ERROR.configValidation, message], status);
}

/** VmConfig::validate's identifier and VFIO path rules: "__" ids are reserved (400), ids and paths are unique (409). */
export function validateDevices(config: JsonObject, action: Action): void {
  const ids = new Set<string>();
  const vfioPaths = new Set<string>();
  for (const { list, cfg } of deviceEntries(config)) {
    const id = cfg.id;
    if (typeof id === 'string') {
      if (id.startsWith('__')) throw configValidation(action, `Identifier ${id} is not valid`, 400);
      if (ids.has(id)) throw configValidation(action, `Identifier ${id} is not unique`, 409);
      ids.add(id);
    }
    if (list === 'devices' && typeof cfg.path === 'string') {
      if (vfioPaths.has(cfg.path)) throw configValidation(action, `Duplicated device path: ${cfg.path}`, 409);
      vfioPaths.add(cfg.path);
    }
  }
}

/** add_to_config: appends to the list, creating it when absent. */
export function withDevice(config: JsonObject, list: DeviceList | 'vsock', cfg: JsonObject): JsonObject {
  const copy = structuredClone(config);
  if (list === 'vsock') copy.vsock = cfg;
  else copy[list] = [...(Array.isArray(copy[list]) ? copy[list] : []), cfg];
  return copy;
}

/** VmConfig::remove_device: drops every device with that id; false when there was none. */
export function removeDevice(config: JsonObject, id: string): boolean {
  let removed = false;
  for (const list of Object.keys(DEVICE_LISTS) as DeviceList[]) {
    const items = config[list];
    if (!Array.isArray(items)) continue;
    const kept = items.filter((d) => !(isObject(d) && d.id === id));
    if (kept.length !== items.length) {
      removed = true;
      config[list] = kept;
    }
  }
  if (isObject(config.vsock) && config.vsock.id === id) {
    delete config.vsock;
    removed = true;
  }
  return removed;
}

export function numberAt(obj: Json | undefined, key: string): number | undefined {
  if (!isObject(obj)) return undefined;
  const v = obj[key];
  return typeof v === 'number' ? v : undefined;
}

export function stringAt(obj: Json | undefined, key: string): string | undefined {
  if (!isObject(obj)) return undefined;
  const v = obj[key];
  return typeof v === 'string' ? v : undefined;
}

const DEFAULT_MEMORY = 512 * 1024 * 1024;

/**
 * Fills what serde's #[serde(default)] fills on the Rust side and the document does not state as
 * defaults (cpus 1/1, memory 512 MiB, rng /dev/urandom, serial Null, console Tty), so vm.info reports
 * what the real VMM reports for a minimal config.
 */
export function withRustDefaults(config: JsonObject): JsonObject {
  const out = structuredClone(config);
  out.cpus = { boot_vcpus: 1, max_vcpus: 1, ...(isObject(out.cpus) ? out.cpus : {}) };
  out.memory = { size: DEFAULT_MEMORY, ...(isObject(out.memory) ? out.memory : {}) };
  out.rng = isObject(out.rng) ? out.rng : { src: '/dev/urandom' };
  out.serial = isObject(out.serial) ? out.serial : { mode: 'Null' };
  out.console = isObject(out.console) ? out.console : { mode: 'Tty' };
  return out;
}
