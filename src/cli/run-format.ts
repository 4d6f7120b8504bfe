import type { InitializeResult, VmEvent, VmInfo } from 'hvplug/protocol';
import type { EndReason } from './run-ending.js';
import { safeLine } from './safe-text.js';

/** Marks hvplug's own lines among the guest's console lines. */
export const PREFIX = '[hvplug]';

export function describePlugin(info: InitializeResult): string {
  return safeLine(`${PREFIX} plugin ${info.plugin.name} ${info.plugin.version} (${info.plugin.vendor}), protocol ${info.protocolVersion}`);
}

function exitDetail(e: Extract<VmEvent, { type: 'exited' }>): string {
  const how = e.signal ? `signal ${e.signal}` : `code ${e.code ?? '?'}`;
  return e.reason ? `${how}: ${e.reason}` : how;
}

/** An event as a line for people; undefined for events that only scripts care about (opaque state). */
export function describeEvent(e: VmEvent): string | undefined {
  const line = eventLine(e);
  return line === undefined ? undefined : safeLine(line);
}

function eventLine(e: VmEvent): string | undefined {
  switch (e.type) {
    case 'created':
      return `${PREFIX} vm ${e.vmId} created`;
    case 'exited':
      return `${PREFIX} vm exited (${exitDetail(e)})`;
    case 'crashed':
    case 'lost':
      return `${PREFIX} vm ${e.type}: ${e.reason}`;
    case 'device-added':
    case 'device-removed':
      return `${PREFIX} device ${e.deviceId} ${e.type === 'device-added' ? 'added' : 'removed'}`;
    case 'state':
      return undefined;
    default:
      return `${PREFIX} vm ${e.type}`;
  }
}

export function describeInfo(info: VmInfo): string {
  const parts = [
    info.pid !== undefined ? `pid ${info.pid}` : undefined,
    `${info.vcpus} vCPU${info.vcpus === 1 ? '' : 's'}`,
    `${info.memoryMiB} MiB`,
    info.machine ? `machine ${info.machine}` : undefined,
    info.accel ? `accel ${info.accel}` : undefined,
  ].filter((p): p is string => p !== undefined);
  return safeLine(`${PREFIX} vm ${parts.join(', ')}`);
}

export function describeStopping(reason: EndReason): string | undefined {
  switch (reason.kind) {
    case 'interrupted':
      return `${PREFIX} ${reason.signal}: stopping the VM (again to force)`;
    case 'timeout':
      return `${PREFIX} ${reason.seconds} s timeout: stopping the VM`;
    case 'waited':
      return safeLine(`${PREFIX} vm/wait: the guest ended (${reason.status}, exit code ${reason.exitCode ?? 'none'}: ${reason.reason})`);
    default:
      return undefined;
  }
}

/** Whether the run ended the way a user wants (asked to stop, or the guest powered off), and if not why. */
export function verdict(reason: EndReason): { ok: true } | { ok: false; message: string } {
  if (reason.kind === 'interrupted' || reason.kind === 'timeout') return { ok: true };
  if (reason.kind === 'plugin-failed') return { ok: false, message: reason.error.message };
  if (reason.kind === 'waited') {
    const how = `vm/wait answered ${reason.status}, exit code ${reason.exitCode ?? 'none'}: ${reason.reason}`;
    const why = reason.dropped.length ? `; the plugin's event was dropped as malformed: ${reason.dropped.join('; ')}` : '';
    if (!reason.dropped.length && reason.status === 'stopped' && reason.exitCode === 0) return { ok: true };
    return { ok: false, message: safeLine(`the guest ended but no event said so (${how})${why}`) };
  }
  const e = reason.event;
  switch (e.type) {
    case 'exited':
      return e.code === 0 && !e.signal ? { ok: true } : { ok: false, message: `the guest exited (${exitDetail(e)})` };
    case 'crashed':
      return { ok: false, message: `the guest crashed: ${e.reason}` };
    case 'lost':
      return { ok: false, message: `the VM was lost: ${e.reason}` };
    default:
      return { ok: true };
  }
}
