import { constants, type Stats } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errors } from 'hvplug/plugin-sdk';
import { DEVICE_TYPES, type Device, type DeviceType, type Issue } from 'hvplug/protocol';
import { errnoOf } from './errors.js';

/**
 * The simulated machine types. `micro` stands for a minimal machine without hotplug (like QEMU's microvm): the
 * capabilities say so, and the plugin refuses hotplug on it too, for hosts that do not check capabilities.
 */
export const MACHINES = {
  standard: { hotplug: true },
  micro: { hotplug: false },
} as const;

export type Machine = keyof typeof MACHINES;
export const DEFAULT_MACHINE: Machine = 'standard';

export function isMachine(name: string): name is Machine {
  return Object.hasOwn(MACHINES, name);
}

export function hotpluggable(machine: string | undefined): boolean {
  return machine === undefined || !isMachine(machine) || MACHINES[machine].hotplug;
}

/** Every device type, attachable before boot, hot-pluggable and hot-unpluggable (machine permitting). */
export const DEVICE_SUPPORT = Object.fromEntries(
  DEVICE_TYPES.map((t) => [t, { coldplug: true, hotplug: true, hotunplug: true }]),
) as Record<DeviceType, { coldplug: boolean; hotplug: boolean; hotunplug: boolean }>;

/** What the protocol's schema cannot say: fields that only make sense together. */
export function deviceIssues(d: Device, path: Issue['path']): Issue[] {
  const issue = (field: string, message: string): Issue[] => [{ path: [...path, field], message }];
  switch (d.type) {
    case 'net':
      if (d.backend === 'tap' && !d.tapName) return issue('tapName', 'a tap backend needs tapName');
      if (d.backend === 'vhost-user' && !d.socketPath) return issue('socketPath', 'a vhost-user backend needs socketPath');
      return [];
    case 'serial':
      if ((d.mode === 'file' || d.mode === 'socket') && !d.path) return issue('path', `a ${d.mode} serial port needs path`);
      return [];
    default:
      return [];
  }
}

async function mustBe(what: string, path: string, ok: (s: Stats) => boolean, kind: string, mode = constants.R_OK): Promise<void> {
  try {
    const s = await stat(path);
    if (!ok(s)) throw Object.assign(new Error(`${path} is not ${kind}`), { code: 'EINVAL' });
    await access(path, mode);
  } catch (err) {
    throw errors.vmmFailure(`${what}: cannot use ${path}: ${(err as Error).message}`, errnoOf(err));
  }
}

/**
 * Opens (in spirit) what the device points at on the host, as a VMM does when the device is attached:
 * a missing disk or backend socket fails here, with the VMM's kind of message.
 */
export async function probeDevice(d: Device): Promise<void> {
  const what = `${d.type} device ${d.id}`;
  switch (d.type) {
    case 'block':
      return mustBe(what, d.path, (s) => s.isFile() || s.isBlockDevice(), 'a file or block device', d.readOnly ? constants.R_OK : constants.R_OK | constants.W_OK);
    case 'net':
      return d.socketPath ? mustBe(what, d.socketPath, (s) => s.isSocket(), 'a socket') : undefined;
    case 'virtio-fs':
      await mustBe(what, d.socketPath, (s) => s.isSocket(), 'a socket');
      return d.sharedDir ? mustBe(what, d.sharedDir, (s) => s.isDirectory(), 'a directory') : undefined;
    case 'vhost-user':
      return mustBe(what, d.socketPath, (s) => s.isSocket(), 'a socket');
    case 'vfio':
      return mustBe(what, d.hostPath, () => true, 'a device');
    case 'rng':
      return mustBe(what, d.source, (s) => s.isCharacterDevice() || s.isFile(), 'a character device');
    case 'serial':
      return d.path ? mustBe(what, dirname(d.path), (s) => s.isDirectory(), 'a directory', constants.W_OK) : undefined;
    case 'vsock':
      return d.socketPath ? mustBe(what, dirname(d.socketPath), (s) => s.isDirectory(), 'a directory', constants.W_OK) : undefined;
    case 'memory':
    case 'cpu':
      return undefined;
  }
}
