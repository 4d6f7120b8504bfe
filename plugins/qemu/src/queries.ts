// Read-only views of a VM: vm/info, vm/pids, vm/stats (from /proc: QEMU's own accounting is per
// vCPU and misses the I/O threads).
import { readFileSync } from 'node:fs';
import type { ResultInputOf } from 'hvplug/protocol';
import type { QemuVm } from './vm.js';

export function infoOf(vm: QemuVm): ResultInputOf<'vm/info'> {
  const s = vm.state;
  return {
    vmId: vm.id,
    status: s.status,
    ...(s.pid === null ? {} : { pid: s.pid }),
    vcpus: s.vcpus,
    memoryMiB: s.memoryMiB,
    machine: s.launch.machine,
    accel: s.launch.accel,
    devices: s.attached.map((a) => ({ id: a.device.id, type: a.device.type })),
    details: {
      accelReason: s.launch.accelReason,
      runDir: s.runDir,
      qmpSocket: s.qmpSocket,
      consoleLog: s.consoleLog,
      kernel: s.launch.kernel,
      vcpusMax: s.launch.vcpusMax,
      lastExit: s.lastExit === null ? null : { ...s.lastExit },
      waiting: vm.waiting,
    },
  };
}

export function pidsOf(vm: QemuVm): number[] {
  return vm.pid !== null && vm.hasProcess() ? [vm.pid] : [];
}

const CLK_TCK = 100;

export function statsOf(vm: QemuVm): ResultInputOf<'vm/stats'> {
  const pid = vm.pid;
  if (pid === null || !vm.hasProcess()) return { cpuTimeMs: 0, memoryRssBytes: 0, uptimeMs: 0, counters: {} };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may contain spaces: state is field 3, utime 14, stime 15, threads 20.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(f[11]);
    const stime = Number(f[12]);
    const threads = Number(f[17]);
    const rssPages = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return {
      cpuTimeMs: ((utime + stime) * 1000) / CLK_TCK,
      memoryRssBytes: rssPages * 4096,
      uptimeMs: vm.state.startedAt === null ? 0 : Date.now() - vm.state.startedAt,
      counters: { threads, utimeTicks: utime, stimeTicks: stime },
    };
  } catch {
    return { cpuTimeMs: 0, memoryRssBytes: 0, uptimeMs: 0, counters: {} };
  }
}
