// The Cloud Hypervisor plugin through the real host (PluginHost → shim → plugin process → VMM), against
// the real `cloud-hypervisor` where it is on PATH and KVM works, and against the contract double of the
// binary everywhere else (the log says which). The plugin is pointed at the VMM with HVPLUG_CH_BINARY: the
// real binary, or a wrapper script that execs the double's bundle. Every test deletes the VMs it created;
// afterEach fails a test that left a VMM (or a double's guest) running, found through /proc.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ErrorCode, type Progress } from 'hvplug/protocol';
import {
  AlreadyExistsError,
  FileStateStore,
  InvalidConfigError,
  InvalidParamsError,
  InvalidStateError,
  NotSupportedError,
  PluginClient,
  PluginHost,
  PluginSpec,
  VmmFailureError,
  VmNotFoundError,
  type ShimHypervisor,
  type ShimVm,
  type VmConfigInput,
  type VmEvent,
} from 'hvplug';
import { CloudHypervisorClient } from '../../src/api-client.js';
import { chooseTarget } from '../../test-support/vmm-process.js';
import { root } from '../../../../scripts/bundle.mjs';
import { alive, eventually, memoryLogger, pluginExecutable, processesUnder, removeTempDirs, tempDir } from '../../../../test/helpers.js';

const PLUGIN = 'cloud-hypervisor';
// Each test starts a host, a plugin and a VMM or two, all node processes: slow on a loaded machine.
vi.setConfig({ testTimeout: 90_000, hookTimeout: 60_000 });
const choice = chooseTarget();
const isDouble = choice.kind === 'double';
const realKernel = process.env.HVPLUG_CH_KERNEL;
/** On the real binary a VM boots only with a real kernel, which only the environment can give. */
const canBoot = isDouble || realKernel !== undefined;
const DOUBLE_BUNDLE = join(root, 'plugins/cloud-hypervisor/dist/cloud-hypervisor-double.mjs');

let binDir: string;
let binary: string;
const hosts: PluginHost[] = [];
/** Directories whose VMMs must all be gone when a test ends. */
const watched: string[] = [];

beforeAll(async () => {
  const where =
    choice.kind === 'real'
      ? `the REAL cloud-hypervisor binary (${choice.reason})`
      : `the contract double, not the real binary (${choice.reason})`;
  console.info(`[cloud-hypervisor plugin] tests run against ${where}`);
  if (!canBoot) console.info('[cloud-hypervisor plugin] HVPLUG_CH_KERNEL is not set: tests that boot a VM are skipped on the real binary');
  if (!isDouble) console.info('[cloud-hypervisor plugin] double-only tests (the double\'s guest process, its status-code modes) are skipped');
  // Not a tempDir(): those go after each test, this one serves the whole file.
  binDir = await mkdtemp(join(tmpdir(), 'ch-bin-'));
  if (choice.kind === 'real' && choice.binary) {
    binary = choice.binary;
  } else {
    binary = join(binDir, 'cloud-hypervisor');
    await writeFile(binary, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(DOUBLE_BUNDLE)} "$@"\n`);
    await chmod(binary, 0o755);
  }
});

/** The double's guest process: a child of the VMM (the real VMM runs vCPUs as threads and has none). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    out.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
  }
  return out;
}

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  const dirs = watched.splice(0);
  const left = processesUnder(dirs);
  for (const pid of left) process.kill(pid, 'SIGKILL');
  await removeTempDirs();
  expect(left, 'VMM processes left running by the test').toEqual([]);
});

afterAll(async () => {
  await rm(binDir, { recursive: true, force: true });
});

interface Setup {
  host: PluginHost;
  hv: ShimHypervisor;
  dir: string;
  runtimeDir: string;
  kernel: string;
}

async function setup(env: Record<string, string> = {}): Promise<Setup> {
  const dir = await tempDir();
  watched.push(dir);
  const runtimeDir = join(dir, 'run');
  const host = new PluginHost({
    stateDir: join(dir, 'state'),
    runtimeDir,
    logger: memoryLogger().logger,
    plugins: [{ name: PLUGIN, command: pluginExecutable(PLUGIN), env: { HVPLUG_CH_BINARY: binary, ...env } }],
    supervision: { backoffMs: 20, healthIntervalMs: 0 },
  });
  hosts.push(host);
  let kernel = realKernel ?? '';
  if (isDouble) {
    kernel = join(dir, 'vmlinux');
    await writeFile(kernel, 'not a kernel: the double only opens it');
  }
  return { host, hv: await host.hypervisor(PLUGIN), dir, runtimeDir, kernel };
}

function config(s: Setup, extra: VmConfigInput = {}): VmConfigInput {
  return {
    kernel: { path: s.kernel, cmdline: 'console=ttyS0 panic=-1' },
    vcpus: { boot: 1, max: 4 },
    memory: { sizeMiB: 256, maxMiB: 512 },
    ...extra,
  };
}

async function image(s: Setup, name: string): Promise<string> {
  const p = join(s.dir, name);
  await writeFile(p, '');
  await truncate(p, 1 << 20);
  return p;
}

/** The VM's events as they arrive, by type. */
function recordEvents(vm: ShimVm): VmEvent[] {
  const seen: VmEvent[] = [];
  vm.on('event', (e) => seen.push(e));
  return seen;
}

const types = (events: VmEvent[]): string[] => events.filter((e) => e.type !== 'state').map((e) => e.type);

function client(s: Setup, vm: ShimVm): CloudHypervisorClient {
  return new CloudHypervisorClient({ socketPath: join(s.runtimeDir, PLUGIN, vm.id, 'api.sock'), timeoutMs: 5_000 });
}

function eventsFile(s: Setup, vm: ShimVm): string {
  return join(s.runtimeDir, PLUGIN, vm.id, 'events.json');
}

async function vmmPid(vm: ShimVm): Promise<number> {
  const { pid } = await vm.info();
  if (pid === undefined) throw new Error(`VM ${vm.id} reports no VMM pid`);
  return pid;
}

describe('capabilities', () => {
  it('advertise what the Cloud Hypervisor API offers, and the shim refuses the rest locally', async () => {
    const s = await setup();
    const caps = s.hv.capabilities;
    expect(caps.methods).not.toContain('vm/threads');
    expect(caps.methods).not.toContain('image/ensure');
    for (const m of ['vm/create', 'vm/start', 'vm/pause', 'vm/resume', 'vm/stop', 'vm/delete', 'vm/save', 'vm/restore', 'vm/recover', 'device/add', 'device/remove', 'vm/resizeVcpus', 'vm/resizeMemory', 'vm/receiveMigration', 'vm/migrate']) {
      expect(caps.methods).toContain(m);
    }
    expect(caps.devices.block).toEqual({ coldplug: true, hotplug: true, hotunplug: true });
    expect(caps.devices.rng).toEqual({ coldplug: true, hotplug: false, hotunplug: false });
    expect(caps.devices.serial).toBeUndefined();
    expect(caps.devices.cpu).toBeUndefined();
    expect(caps.devices.memory).toBeUndefined();
    expect(caps.consoleKinds).toEqual(['log']);
    expect(caps.rateLimiter).toBe(true);
    expect(s.hv.info.configSchema).toMatchObject({ properties: { memoryHotplug: { enum: ['acpi', 'virtio-mem'] } } });

    const serial = s.hv.createVm({ config: config(s, { devices: [{ type: 'serial', id: 's0', mode: 'file', path: join(s.dir, 's.log') }] }) });
    await expect(serial).rejects.toMatchObject({ local: true });
    await expect(serial).rejects.toBeInstanceOf(NotSupportedError);
    const vm = await s.hv.createVm({ config: config(s) });
    await expect(vm.addDevice({ device: { type: 'memory', id: 'm0', sizeMiB: 128 } })).rejects.toMatchObject({ local: true });
    await expect(vm.threads()).rejects.toMatchObject({ local: true });
    await vm.delete();
  });

  it('config/validate adjusts the config and names what Cloud Hypervisor cannot do', async () => {
    const s = await setup();
    const ok = await s.hv.validateConfig({ config: config(s, { memory: { sizeMiB: 256, slots: 2 } }) });
    expect(ok.config.vcpus).toEqual({ boot: 1, max: 4 });
    expect(ok.warnings.join('\n')).toMatch(/memory.slots is ignored/);
    expect(ok.warnings.join('\n')).toMatch(/vsock device \(guest CID 3\) for an agent on port 1024/);
    const err = await s.hv
      .validateConfig({ config: { machine: 'q35', console: 'pty', devices: [{ type: 'net', id: 'n0', backend: 'user' }], plugin: { memoryHotplug: 'dimm' } } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidConfigError);
    const paths = (err as InvalidConfigError).issues.map((i) => i.path.join('.'));
    expect(paths).toEqual(['kernel', 'machine', 'console', 'devices.0', 'plugin.memoryHotplug']);
    expect((err as Error).message).toMatch(/no user-mode networking/);
  });
});

describe.skipIf(!canBoot)('lifecycle', () => {
  it('create → start → pause → resume → stop → delete, announced by events from the event monitor', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    const events = recordEvents(vm);
    const dir = join(s.runtimeDir, PLUGIN, vm.id);
    expect(existsSync(join(dir, 'api.sock'))).toBe(true);
    const created = await vm.info();
    expect(created).toMatchObject({ status: 'created', vcpus: 1, memoryMiB: 256, devices: [] });
    expect(created.details).toMatchObject({ vmmState: 'Created' });
    const pid = created.pid!;
    expect(alive(pid)).toBe(true);
    // Detached: its own session, not the plugin's.
    const plugin = (await s.host.client(PLUGIN))!.pid;
    const [, , pgrp, session] = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    expect([pgrp, session]).toEqual([String(pid), String(pid)]);
    expect(pid).not.toBe(plugin);

    expect((await vm.start()).status).toBe('running');
    expect(await vm.check()).toMatchObject({ ok: true });
    expect((await vm.pids()).pids).toContain(pid);
    const stats = await vm.stats();
    expect(stats.memoryRssBytes).toBeGreaterThan(0);
    expect(stats.uptimeMs).toBeGreaterThan(0);
    expect((await vm.pause()).status).toBe('paused');
    expect((await vm.info()).details).toMatchObject({ vmmState: 'Paused' });
    expect((await vm.resume()).status).toBe('running');
    expect((await vm.stop()).status).toBe('stopped');
    await eventually(() => !alive(pid), 5_000, 'the VMM to exit');
    expect(types(events)).toEqual(['running', 'paused', 'resumed', 'stopped', 'exited']);
    const exited = events.find((e) => e.type === 'exited');
    expect(exited).toMatchObject({ code: 0, signal: null });
    const stopped = await vm.info();
    expect(stopped.status).toBe('stopped');
    expect(stopped.pid).toBeUndefined();
    expect(await vm.check()).toMatchObject({ ok: false });
    expect(await vm.wait()).toMatchObject({ status: 'stopped', exitCode: 0 });
    // The events the host saw came from the VMM's monitor file, which holds them in CH's own format.
    const file = await readFile(join(dir, 'events.json'), 'utf8');
    for (const e of ['"booted"', '"paused"', '"resumed"', '"shutdown"']) expect(file).toContain(e);
    expect((await vm.stop()).status).toBe('stopped');
    await vm.delete();
    expect(existsSync(dir)).toBe(false);
    // Deleting again, and deleting a VM that never was, succeed.
    await s.hv.channel.call('vm/delete', { vmId: vm.id }, { timeoutMs: 10_000 });
    await s.hv.channel.call('vm/delete', { vmId: 'never-was' }, { timeoutMs: 10_000 });
    await expect(s.hv.channel.call('vm/info', { vmId: vm.id }, { timeoutMs: 10_000 })).rejects.toBeInstanceOf(VmNotFoundError);
  });

  it('announces created first, and vm/wait ends when the VM stops', async () => {
    const s = await setup();
    const seen: VmEvent[] = [];
    s.hv.onEvent((e) => seen.push(e));
    const vm = await s.hv.createVm({ config: config(s) });
    // Nothing (not even a state event) before created.
    expect(seen.map((e) => e.type)).toEqual(['created']);
    await vm.start();
    const waiting = vm.wait(undefined, { timeoutMs: null });
    let settled = false;
    void waiting.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false);
    await vm.stop({ graceMs: 2_000 });
    expect(await waiting).toMatchObject({ status: 'stopped', exitCode: 0 });
    await vm.delete();
  });

  it('a VMM that ignores the API is SIGKILLed when graceMs is over', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    const events = recordEvents(vm);
    await vm.start();
    const pid = await vmmPid(vm);
    process.kill(pid, 'SIGSTOP');
    const t0 = Date.now();
    expect((await vm.stop({ graceMs: 500 })).status).toBe('stopped');
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(alive(pid)).toBe(false);
    expect(events.find((e) => e.type === 'exited')).toMatchObject({ signal: 'SIGKILL', reason: 'the VMM was shut down on request' });
    await vm.delete();
  });
  it('vm/delete does not queue behind a call stuck on a hung VMM; that call fails with a typed error', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    const pid = await vmmPid(vm);
    process.kill(pid, 'SIGSTOP');
    const start = vm.start().catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    await vm.delete();
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(alive(pid)).toBe(false);
    expect(await start).toBeInstanceOf(VmmFailureError);
  });
});

describe.skipIf(!canBoot)('errors', () => {
  it('a call the state machine forbids is refused by the SDK from the plugin\'s vmStatus, before the handler', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    // The SDK's refusal names the method and every status the table allows it in; the handler's does not.
    await expect(vm.pause()).rejects.toThrow(/^vm\/pause: VM \S+ is created; this needs running$/);
    await vm.start();
    await expect(vm.resume()).rejects.toThrow(/^vm\/resume: VM \S+ is running; this needs paused$/);
    await vm.delete();
  });

  const modes = isDouble ? (['documented', 'implemented'] as const) : (['real'] as const);
  it.each(modes)('a wrong state is InvalidState, answered without asking the VMM (status codes: %s)', async (mode) => {
    const s = await setup(mode === 'real' ? {} : { CH_DOUBLE_STATUS_CODES: mode });
    const vm = await s.hv.createVm({ config: config(s) });
    const refused = async (call: Promise<unknown>, current: string): Promise<void> => {
      const err = await call.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidStateError);
      expect(err).toMatchObject({ current });
    };
    await refused(vm.pause(), 'created');
    await refused(vm.resume(), 'created');
    await refused(vm.save({ path: join(s.dir, 'snap') }), 'created');
    await refused(vm.resizeVcpus({ count: 2 }), 'created');
    await vm.start();
    await refused(vm.start(), 'running');
    await refused(vm.resume(), 'running');
    await refused(vm.save({ path: join(s.dir, 'snap') }), 'running');
    await vm.pause();
    await refused(vm.pause(), 'paused');
    await refused(vm.addDevice({ device: { type: 'block', id: 'late', path: await image(s, 'late.img') } }), 'paused');
    await vm.stop();
    await refused(vm.resume(), 'stopped');
    await refused(vm.start(), 'stopped');
    // None of them reached the VMM, which writes an event for each attempt it gets (resuming, snapshotting...).
    const file = await readFile(eventsFile(s, vm), 'utf8');
    expect(file.match(/"(resuming|snapshotting|resizing)"/g)).toBeNull();
    expect(file.match(/"(booting|pausing)"/g)).toEqual(['"booting"', '"pausing"']);
    await vm.delete();
  });

  it('a body the VMM\'s schema rejects is VmmFailure with its 400 and its message; nothing is left behind', async () => {
    const s = await setup();
    const err = await s.hv.createVm({ config: config(s, { plugin: { overrides: { cpus: { boot_vcpus: 'two' } } } }) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmmFailureError);
    expect(err).toMatchObject({ vmmCode: 400 });
    expect((err as VmmFailureError).vmmMessage).toMatch(/^Failed to deserialize JSON/);
    expect((err as Error).message).toMatch(/vm\.create failed with HTTP 400/);
    expect(readdirSync(join(s.runtimeDir, PLUGIN))).toEqual([]);
  });

  it('the VMM\'s own errors (a VM gone from the VMM: 404; a kernel it cannot open: 500) are VmmFailure', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    // Someone deletes the VM inside the VMM behind the plugin's back: the VMM answers 404.
    await client(s, vm).deleteVm();
    const info = await vm.info().catch((e: unknown) => e);
    expect(info).toBeInstanceOf(VmmFailureError);
    expect(info).toMatchObject({ vmmCode: 404 });
    expect((info as VmmFailureError).vmmMessage).toContain('VM is not created');
    const boot = await vm.start().catch((e: unknown) => e);
    expect(boot).toBeInstanceOf(VmmFailureError);
    expect(boot).toMatchObject({ vmmCode: 404 });
    await vm.delete();

    const missing = await s.hv.createVm({ config: config(s, { kernel: { path: join(s.dir, 'no-such-kernel') } }) });
    const err = await missing.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmmFailureError);
    expect(err).toMatchObject({ vmmCode: 500 });
    expect((err as VmmFailureError).vmmMessage).toMatch(/Cannot open kernel file/);
    expect((await missing.info()).status).toBe('created');
    await missing.delete();
  });

  it('an unknown VM is VmNotFound; a duplicate id AlreadyExists; an impossible config InvalidConfig', async () => {
    const s = await setup();
    await expect(s.hv.channel.call('vm/pause', { vmId: 'nobody' }, { timeoutMs: 5_000 })).rejects.toBeInstanceOf(VmNotFoundError);
    const vm = await s.hv.createVm({ config: config(s) });
    await expect(s.hv.channel.call('vm/create', { vmId: vm.id, config: config(s) }, { timeoutMs: 5_000 })).rejects.toBeInstanceOf(AlreadyExistsError);
    await expect(s.hv.createVm({ config: { ...config(s), kernel: undefined } })).rejects.toBeInstanceOf(InvalidConfigError);
    await vm.delete();
  });
});

describe.skipIf(!canBoot)('the VMM exiting', () => {
  it('a killed VMM is an exited event (signal) and a crash; vm/wait ends; later calls fail with a typed error', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    const events = recordEvents(vm);
    await vm.start();
    const pid = await vmmPid(vm);
    const guests = isDouble ? childrenOf(pid) : [];
    const waiting = vm.wait(undefined, { timeoutMs: null });
    process.kill(pid, 'SIGKILL');
    expect(await waiting).toMatchObject({ status: 'crashed', exitCode: null, reason: 'the VMM was killed by SIGKILL' });
    expect(types(events)).toEqual(['running', 'exited', 'crashed']);
    expect(events.find((e) => e.type === 'exited')).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(vm.status).toBe('crashed');
    await expect(vm.pause()).rejects.toBeInstanceOf(InvalidStateError);
    await expect(vm.stats()).rejects.toBeInstanceOf(InvalidStateError);
    const info = await vm.info();
    expect(info.status).toBe('crashed');
    expect(info.pid).toBeUndefined();
    expect(await vm.check()).toMatchObject({ ok: false });
    await eventually(() => guests.every((g) => !alive(g)), 5_000, 'the guest to go with its VMM');
    await vm.delete();
  });

  it('vm/info asked while its VMM dies answers with the VM\'s status, never the VMM\'s connection error', async () => {
    // Seen in the conformance suite: vm/info between the VMM's death and the plugin seeing its exit went to
    // a socket nobody served (ECONNRESET/ECONNREFUSED) and failed the call with VmmFailure.
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    await vm.start();
    const pid = await vmmPid(vm);
    const failures: string[] = [];
    const statuses: string[] = [];
    let asked = 0;
    const asking = (async () => {
      for (;;) {
        asked++;
        if (asked === 3) process.kill(pid, 'SIGKILL');
        try {
          const info = await vm.info();
          statuses.push(info.status);
          if (info.status === 'crashed') return;
        } catch (err) {
          failures.push(`${(err as Error).name}: ${(err as Error).message}`);
        }
        if (asked > 2_000) return;
      }
    })();
    await asking;
    expect(failures).toEqual([]);
    expect(statuses.at(-1)).toBe('crashed');
    expect(new Set(statuses)).toEqual(new Set(['running', 'crashed']));
    await vm.delete();
  });

  it.skipIf(!isDouble)('a guest power-off ends the VMM cleanly: stopped, then exited with code 0', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    const events = recordEvents(vm);
    await vm.start();
    const pid = await vmmPid(vm);
    const [guest] = childrenOf(pid);
    // The double's guest is a process: its exit is the guest powering off.
    process.kill(guest!, 'SIGTERM');
    expect(await vm.wait(undefined, { timeoutMs: 10_000 })).toMatchObject({ status: 'stopped', exitCode: 0 });
    expect(types(events)).toEqual(['running', 'stopped', 'exited']);
    await expect(vm.resume()).rejects.toBeInstanceOf(InvalidStateError);
    await vm.delete();
  });
});

describe.skipIf(!canBoot)('devices', () => {
  it('cold in the config and before boot (vm.add-*, vm.remove-device), hot after boot', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({
      config: config(s, { devices: [{ type: 'block', id: 'root', path: await image(s, 'root.img'), readOnly: true, rateLimit: { bandwidthBytesPerSec: 1 << 20, burstBytes: 1 << 21 } }] }),
    });
    const events = recordEvents(vm);
    const ch = client(s, vm);
    const disk = (await ch.vmInfo()).config.disks?.find((d) => d.id === 'root');
    expect(disk).toMatchObject({ readonly: true, image_type: 'Raw', rate_limiter_config: { bandwidth: { size: 1 << 20, refill_time: 1000, one_time_burst: 1 << 21 } } });

    // Cold: into the VM's config, announced by the plugin (Cloud Hypervisor has no device-added event).
    await vm.addDevice({ device: { type: 'block', id: 'data', path: await image(s, 'data.img'), format: 'qcow2' } });
    expect((await ch.vmInfo()).config.disks?.map((d) => d.id)).toEqual(['root', 'data']);
    await vm.addDevice({ device: { type: 'rng', id: 'entropy', source: '/dev/urandom' } });
    expect((await ch.vmInfo()).config.rng).toMatchObject({ src: '/dev/urandom' });
    await vm.removeDevice({ deviceId: 'data' });
    expect((await ch.vmInfo()).config.disks?.map((d) => d.id)).toEqual(['root']);
    expect((await vm.getConfig()).config.devices.map((d) => d.id)).toEqual(['root', 'entropy']);

    await vm.start();
    // Hot: vm.add-disk answers the PCI address; the removal is announced by the VMM's device-removed event.
    await vm.addDevice({ device: { type: 'block', id: 'hot', path: await image(s, 'hot.img') } });
    const info = await vm.info();
    expect(info.devices).toEqual([
      { id: 'root', type: 'block' },
      { id: 'entropy', type: 'rng' },
      { id: 'hot', type: 'block' },
    ]);
    expect((info.details.pciAddresses as Record<string, string>).hot).toMatch(/^[0-9a-f]{4}:00:[0-9a-f]{2}\.0$/);
    await vm.removeDevice({ deviceId: 'hot' });
    await eventually(() => events.some((e) => e.type === 'device-removed' && e.deviceId === 'hot'), 5_000, 'device-removed of hot');
    expect((await vm.info()).devices.map((d) => d.id)).toEqual(['root', 'entropy']);
    expect(types(events).filter((t) => t.startsWith('device'))).toEqual(['device-added', 'device-added', 'device-removed', 'device-added', 'device-removed']);

    // The rng device exists only in the config: no hot-unplug (refused by the shim from the capabilities).
    await expect(vm.removeDevice({ deviceId: 'entropy' })).rejects.toMatchObject({ local: true });
    await expect(vm.addDevice({ device: { type: 'block', id: 'root', path: await image(s, 'again.img') } })).rejects.toBeInstanceOf(AlreadyExistsError);
    // No user-mode networking: the plugin declares tap and vhost-user only, and the shim refuses the rest.
    const userNet = await vm.addDevice({ device: { type: 'net', id: 'n0', backend: 'user' } }).catch((e: unknown) => e);
    expect(userNet).toBeInstanceOf(NotSupportedError);
    expect(userNet).toMatchObject({ local: true, message: expect.stringMatching(/no user net backend \(it has tap, vhost-user\)/) });
    await expect(vm.removeDevice({ deviceId: 'nonesuch' })).rejects.toBeInstanceOf(InvalidParamsError);
    // What the VMM itself refuses (a disk image that does not exist) comes back with its messages.
    const err = await vm.addDevice({ device: { type: 'block', id: 'ghost', path: join(s.dir, 'ghost.img') } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmmFailureError);
    expect((err as VmmFailureError).vmmMessage).toMatch(/disk/i);
    expect((await vm.info()).devices.map((d) => d.id)).toEqual(['root', 'entropy']);
    await vm.delete();
  });

  it('the agent socket is the plugin\'s own vsock until the caller adds one', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    const dir = join(s.runtimeDir, PLUGIN, vm.id);
    expect(await vm.agentSocket()).toEqual({ kind: 'vsock', cid: 3, port: 1024, path: join(dir, 'agent.vsock') });
    await vm.start();
    expect((await stat(join(dir, 'agent.vsock'))).isSocket()).toBe(true);
    await vm.addDevice({ device: { type: 'vsock', id: 'v0', guestCid: 42 } });
    expect(await vm.agentSocket()).toEqual({ kind: 'vsock', cid: 42, port: 1024, path: join(dir, 'vsock.sock') });
    expect((await client(s, vm).vmInfo()).config.vsock).toMatchObject({ id: 'v0', cid: 42 });
    await expect(vm.addDevice({ device: { type: 'vsock', id: 'v1', guestCid: 43 } })).rejects.toMatchObject({ code: 'ResourceExhausted' });
    await vm.delete();

    const none = await s.hv.createVm({ config: config(s, { plugin: { agent: { enabled: false } } }) });
    expect((await client(s, none).vmInfo()).config.vsock).toBeUndefined();
    await expect(none.agentSocket()).rejects.toBeInstanceOf(NotSupportedError);
    await none.delete();
  });
});

describe.skipIf(!canBoot)('resize, console, stats', () => {
  it('vm.resize adds and removes vCPUs up to the max; memory grows (ACPI) and shrinks only with virtio-mem', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    await vm.start();
    expect(await vm.resizeVcpus({ count: 3 })).toEqual({ vcpus: 3 });
    expect((await vm.info()).vcpus).toBe(3);
    expect(await vm.resizeVcpus({ count: 2 })).toEqual({ vcpus: 2 });
    await expect(vm.resizeVcpus({ count: 5 })).rejects.toBeInstanceOf(InvalidConfigError);
    expect(await vm.resizeMemory({ sizeMiB: 384 })).toEqual({ memoryMiB: 384 });
    expect((await vm.info()).memoryMiB).toBe(384);
    expect((await vm.getConfig()).config).toMatchObject({ vcpus: { boot: 2, max: 4 }, memory: { sizeMiB: 384, maxMiB: 512 } });
    await expect(vm.resizeMemory({ sizeMiB: 1024 })).rejects.toBeInstanceOf(InvalidConfigError);
    const shrink = await vm.resizeMemory({ sizeMiB: 256 }).catch((e: unknown) => e);
    expect(shrink).toBeInstanceOf(NotSupportedError);
    expect(shrink).toMatchObject({ local: false });
    expect((await client(s, vm).vmInfo()).config.memory).toMatchObject({ hotplug_method: 'Acpi', shared: true });
    await vm.delete();

    const mem = await s.hv.createVm({ config: config(s, { plugin: { memoryHotplug: 'virtio-mem' } }) });
    await mem.start();
    expect((await client(s, mem).vmInfo()).config.memory).toMatchObject({ hotplug_method: 'VirtioMem', hotplug_size: 256 << 20 });
    expect(await mem.resizeMemory({ sizeMiB: 512 })).toEqual({ memoryMiB: 512 });
    expect(await mem.resizeMemory({ sizeMiB: 256 })).toEqual({ memoryMiB: 256 });
    await expect(mem.resizeMemory({ sizeMiB: 128 })).rejects.toBeInstanceOf(NotSupportedError);
    await mem.delete();
  });

  it('the serial port goes to a log file; vm/stats adds vm.counters to /proc', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s, { devices: [{ type: 'block', id: 'd0', path: await image(s, 'd0.img') }] }) });
    const path = join(s.runtimeDir, PLUGIN, vm.id, 'console.log');
    expect(await vm.console()).toEqual({ kind: 'log', path });
    expect(existsSync(path)).toBe(true);
    // Named relative to the VMM's directory (its cwd): a config carried to another VMM names that VMM's file.
    expect((await client(s, vm).vmInfo()).config.serial).toEqual({ mode: 'File', file: 'console.log' });
    expect((await vm.stats()).counters).toEqual({});
    await vm.start();
    const stats = await vm.stats();
    expect(stats.counters['d0.read_bytes']).toBeGreaterThanOrEqual(0);
    expect(Object.keys(stats.counters)).toContain('d0.write_ops');
    await vm.delete();

    const quiet = await s.hv.createVm({ config: config(s, { console: 'none' }) });
    expect((await client(s, quiet).vmInfo()).config.serial).toEqual({ mode: 'Null' });
    await expect(quiet.console()).rejects.toBeInstanceOf(NotSupportedError);
    await quiet.delete();
  });
});

describe.skipIf(!canBoot)('save and restore', () => {
  it('a paused VM is snapshotted into one file; a new VMM restores it paused, in its own directory', async () => {
    const s = await setup();
    const source = await s.hv.createVm({
      config: config(s, { vcpus: { boot: 2, max: 4 }, devices: [{ type: 'block', id: 'd0', path: await image(s, 'd0.img') }] }),
    });
    await source.start();
    await expect(source.save({ path: join(s.dir, 'early.snap') })).rejects.toBeInstanceOf(InvalidStateError);
    await source.pause();
    const path = join(s.dir, 'snaps', 'vm.snap');
    const progress: string[] = [];
    const saved = await source.save({ path }, { onProgress: (p) => progress.push(p.value.message ?? '') });
    expect(saved.path).toBe(path);
    expect(saved.sizeBytes).toBe((await stat(path)).size);
    expect(progress).toEqual(['snapshotting', 'packing', 'saved']);
    // A POSIX tar of Cloud Hypervisor's snapshot directory and the plugin's sidecar; nothing left beside it.
    const head = await readFile(path);
    expect(head.toString('latin1', 257, 262)).toBe('ustar');
    const members = [...head.toString('latin1').matchAll(/(config\.json|state\.json|hvplug-snapshot\.json|memory-ranges)\0/g)].map((m) => m[1]);
    // The real VMM also writes memory-ranges; the double has no guest memory to write.
    expect(members).toEqual(expect.arrayContaining(['config.json', 'hvplug-snapshot.json', 'state.json']));
    expect(readdirSync(join(s.dir, 'snaps'))).toEqual(['vm.snap']);
    expect((await source.info()).status).toBe('paused');
    const sourceConfig = source.config;
    await source.delete();

    const seen: VmEvent[] = [];
    s.hv.onEvent((e) => seen.push(e));
    const restored = await s.hv.restoreVm({ config: sourceConfig, path });
    const events = recordEvents(restored);
    expect(restored.status).toBe('paused');
    expect(types(seen.filter((e) => e.vmId === restored.id))).toEqual(['created', 'paused']);
    const dir = join(s.runtimeDir, PLUGIN, restored.id);
    const info = await restored.info();
    expect(info).toMatchObject({ status: 'paused', vcpus: 2, devices: [{ id: 'd0', type: 'block' }] });
    // The serial log and the agent vsock are named relative to the VMM's directory: the new VM's.
    const ch = (await client(s, restored).vmInfo()).config;
    expect(ch.serial).toEqual({ mode: 'File', file: 'console.log' });
    expect(ch.vsock?.socket).toBe('agent.vsock');
    expect((await stat(join(dir, 'agent.vsock'))).isSocket()).toBe(true);
    expect((await restored.agentSocket()).path).toBe(join(dir, 'agent.vsock'));
    expect(existsSync(join(dir, 'restore'))).toBe(false);
    expect((await restored.resume()).status).toBe('running');
    expect(types(events)).toEqual(['resumed']);
    await restored.delete();

    const junk = join(s.dir, 'junk.snap');
    await writeFile(junk, 'not a snapshot');
    await expect(s.hv.restoreVm({ config: sourceConfig, path: junk })).rejects.toBeInstanceOf(InvalidConfigError);
    expect(readdirSync(join(s.runtimeDir, PLUGIN))).toEqual([]);
  });
});

describe.skipIf(!canBoot)('recovery', () => {
  it('after a SIGKILL of the plugin the VMM runs on; the restarted plugin re-attaches and follows its events', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    await vm.start();
    const pid = await vmmPid(vm);
    const events = recordEvents(vm);
    const plugin = (await s.host.client(PLUGIN))!.pid;
    const recovered = new Promise<{ vmId: string }>((r) => s.host.once('vm-recovered', r));
    process.kill(plugin, 'SIGKILL');
    expect((await recovered).vmId).toBe(vm.id);
    expect((await s.host.client(PLUGIN))!.pid).not.toBe(plugin);
    expect(alive(pid)).toBe(true);
    expect(await vm.info()).toMatchObject({ status: 'running', pid });
    await vm.pause();
    await vm.resume();
    expect(types(events)).toEqual(['recovered', 'paused', 'resumed']);
    // The new plugin process did not start the VMM: it sees the exit through /proc, not as its parent.
    process.kill(pid, 'SIGKILL');
    expect(await vm.wait(undefined, { timeoutMs: 10_000 })).toMatchObject({ status: 'crashed', exitCode: null });
    expect(events.find((e) => e.type === 'exited')).toMatchObject({ code: null, signal: null });
    await vm.delete();
  });

  it('pause and resume leave the durable record alone; a restarted plugin or host delivers none of their events again', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    await vm.start();
    const stateDir = join(s.dir, 'state');
    const recordFile = join(stateDir, 'vms', `${vm.id}.json`);
    const durable = await readFile(recordFile, 'utf8');
    const stateBefore = vm.state;
    const events = recordEvents(vm);
    // The answers carry the status alone: the plugin's state (a live VM's is written running) did not change.
    expect(await vm.pause()).toEqual({ status: 'paused' });
    expect(await vm.resume()).toEqual({ status: 'running' });
    expect(await vm.pause()).toEqual({ status: 'paused' });
    // Long enough for the plugin's event-file poll (250 ms) to have run twice: no state event follows either.
    await new Promise((r) => setTimeout(r, 700));
    expect(types(events)).toEqual(['paused', 'resumed', 'paused']);
    expect(events.filter((e) => e.type === 'state')).toEqual([]);
    expect(vm.state).toEqual(stateBefore);
    expect(await readFile(recordFile, 'utf8')).toBe(durable);
    // The status went to the volatile status file.
    expect((await new FileStateStore(stateDir).list()).records.map((r) => r.status)).toEqual(['paused']);

    // A new plugin process reads the event file on from the record's offset: the pauses and the resume it finds
    // there were delivered already, and vm.info says where the VM is.
    const plugin = (await s.host.client(PLUGIN))!.pid;
    const recovered = new Promise((r) => s.host.once('vm-recovered', r));
    process.kill(plugin, 'SIGKILL');
    await recovered;
    expect((await vm.info()).status).toBe('paused');
    await new Promise((r) => setTimeout(r, 700));
    expect(types(events)).toEqual(['paused', 'resumed', 'paused', 'recovered']);
    const afterRecovery = await readFile(recordFile, 'utf8');
    expect(await vm.resume()).toEqual({ status: 'running' });
    expect(await vm.pause()).toEqual({ status: 'paused' });
    expect(types(events)).toEqual(['paused', 'resumed', 'paused', 'recovered', 'resumed', 'paused']);

    // A new host: the record is the one a crash would have left (closing writes nothing), its offset before the
    // last resume and pause, which the new plugin reads again; the status is the status file's, and vm.info's.
    await s.host.close();
    expect(await readFile(recordFile, 'utf8')).toBe(afterRecovery);
    const { eventsOffset } = JSON.parse(afterRecovery).state as { eventsOffset: number };
    expect(eventsOffset).toBeLessThan((await readFile(eventsFile(s, vm), 'utf8')).lastIndexOf('"paused"'));
    const host = new PluginHost({
      stateDir,
      runtimeDir: s.runtimeDir,
      logger: memoryLogger().logger,
      plugins: [{ name: PLUGIN, command: pluginExecutable(PLUGIN), env: { HVPLUG_CH_BINARY: binary } }],
      supervision: { healthIntervalMs: 0 },
    });
    hosts.push(host);
    expect((await host.reattach()).recovered).toEqual([vm.id]);
    const again = (await host.vm(vm.id))!;
    expect(again.status).toBe('paused');
    const later = recordEvents(again);
    await new Promise((r) => setTimeout(r, 700));
    expect(types(later)).toEqual([]);
    expect(await again.resume()).toEqual({ status: 'running' });
    expect(types(later)).toEqual(['resumed']);
    await again.delete();
  });

  it('what changed while no plugin watched is read back: the status from vm.info, removals from the event file', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s, { devices: [{ type: 'block', id: 'd0', path: await image(s, 'd0.img') }] }) });
    await vm.start();
    const events = recordEvents(vm);
    const plugin = (await s.host.client(PLUGIN))!.pid;
    // Frozen, the plugin sees nothing of what is done to the VM directly through its API socket.
    process.kill(plugin, 'SIGSTOP');
    await client(s, vm).pauseVm();
    await client(s, vm).removeDevice({ id: 'd0' });
    const recovered = new Promise((r) => s.host.once('vm-recovered', r));
    process.kill(plugin, 'SIGKILL');
    process.kill(plugin, 'SIGCONT');
    await recovered;
    const info = await vm.info();
    expect(info.status).toBe('paused');
    expect(info.devices).toEqual([]);
    expect(types(events)).toEqual(['device-removed', 'recovered']);
    await vm.resume();
    await vm.delete();
  });

  it('a VMM that died while the plugin was down is lost; a stopped VM stays stopped', async () => {
    const s = await setup();
    const doomed = await s.hv.createVm({ config: config(s) });
    await doomed.start();
    const stopped = await s.hv.createVm({ config: config(s) });
    await stopped.start();
    await stopped.stop();
    const pid = await vmmPid(doomed);
    const plugin = (await s.host.client(PLUGIN))!.pid;
    process.kill(plugin, 'SIGSTOP');
    process.kill(pid, 'SIGKILL');
    await eventually(() => !alive(pid), 5_000, 'the VMM to die');
    const lost = new Promise<{ vmId: string }>((r) => s.host.once('vm-lost', r));
    const recovered = new Promise<{ vmId: string }>((r) => s.host.once('vm-recovered', r));
    process.kill(plugin, 'SIGKILL');
    process.kill(plugin, 'SIGCONT');
    expect((await lost).vmId).toBe(doomed.id);
    expect(doomed.status).toBe('lost');
    expect((await doomed.info()).status).toBe('lost');
    // (The host then announces "recovered", which the protocol maps to running: vm/info has the plugin's word.)
    expect((await recovered).vmId).toBe(stopped.id);
    expect((await stopped.info()).status).toBe('stopped');
    await doomed.delete();
    await stopped.delete();
    expect(readdirSync(join(s.runtimeDir, PLUGIN))).toEqual([]);
  });

  it('vm/disconnect leaves the VMM running; the next call re-attaches', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    await vm.start();
    const pid = await vmmPid(vm);
    const events = recordEvents(vm);
    await vm.disconnect();
    expect(alive(pid)).toBe(true);
    // Changes made while disconnected are picked up when the plugin attaches again.
    await client(s, vm).pauseVm();
    await new Promise((r) => setTimeout(r, 600));
    expect(types(events)).toEqual([]);
    expect((await vm.info()).status).toBe('paused');
    expect(types(events)).toEqual(['paused']);
    await vm.resume();
    await vm.delete();
  });

  it('a plugin shut down by its host leaves the VMMs running; a new host re-attaches from its state store', async () => {
    const s = await setup();
    const vm = await s.hv.createVm({ config: config(s) });
    await vm.start();
    const pid = await vmmPid(vm);
    await s.host.close();
    expect(alive(pid)).toBe(true);
    const host = new PluginHost({
      stateDir: join(s.dir, 'state'),
      runtimeDir: s.runtimeDir,
      logger: memoryLogger().logger,
      plugins: [{ name: PLUGIN, command: pluginExecutable(PLUGIN), env: { HVPLUG_CH_BINARY: binary } }],
    });
    hosts.push(host);
    const report = await host.reattach();
    expect(report.recovered).toEqual([vm.id]);
    const again = (await host.vm(vm.id))!;
    expect(await again.info()).toMatchObject({ status: 'running', pid });
    await again.delete();
    expect(alive(pid)).toBe(false);
  });

  it('a vm/wait the host cancels is answered Cancelled on the wire, not InternalError', async () => {
    const s = await setup();
    const seen: { direction: string; message: { id?: number; method?: string; error?: { code: number } } }[] = [];
    const client = await PluginClient.start(PluginSpec.parse({ name: PLUGIN, command: pluginExecutable(PLUGIN), env: { HVPLUG_CH_BINARY: binary } }), {
      stateDir: join(s.dir, 'raw-state'),
      runtimeDir: join(s.dir, 'raw-run'),
      logger: memoryLogger().logger,
      logLevel: 'info',
      hostVersion: '0.0.0',
      trace: (direction, message) => seen.push({ direction, message: message as (typeof seen)[number]['message'] }),
    });
    watched.push(join(s.dir, 'raw-run'));
    const vmId = '0b6f2c1e-4d3a-4e8b-9f1c-2a3b4c5d6e7f';
    try {
      await client.call('vm/create', { vmId, config: { ...config(s), devices: [], plugin: {} } }, { timeoutMs: 30_000 });
      await client.call('vm/start', { vmId }, { timeoutMs: 30_000 });
      const ac = new AbortController();
      const waiting = client.call('vm/wait', { vmId }, { timeoutMs: null, signal: ac.signal });
      waiting.catch(() => undefined);
      await eventually(() => seen.some((m) => m.direction === 'send' && m.message.method === 'vm/wait'));
      await new Promise((r) => setTimeout(r, 100));
      ac.abort();
      const id = seen.find((m) => m.direction === 'send' && m.message.method === 'vm/wait')?.message.id;
      await eventually(() => seen.some((m) => m.direction === 'receive' && m.message.id === id));
      expect(seen.find((m) => m.direction === 'receive' && m.message.id === id)?.message.error?.code).toBe(ErrorCode.Cancelled);
    } finally {
      await client.call('vm/delete', { vmId }, { timeoutMs: 30_000 }).catch(() => undefined);
      await client.close();
    }
  });
});

describe.skipIf(!canBoot)('live migration between two hosts, each with its own plugin process and runtime directory', () => {
  it('PluginHost.migrate moves the VM and its record: one record afterwards, on the destination; the source VMM gone', async () => {
    const a = await setup();
    const b = await setup();
    const vm = await a.hv.createVm({ config: config(a, { name: 'mover', devices: [{ type: 'block', id: 'd0', path: await image(a, 'd0.img') }] }) });
    await vm.start();
    const srcPid = await vmmPid(vm);
    const srcDir = join(a.runtimeDir, PLUGIN, vm.id);
    const progress: Progress[] = [];
    const report = await a.host.migrate(vm.id, b.host, { onProgress: (p) => progress.push(p) });

    expect(report.uri).toBe(`unix:${join(b.runtimeDir, PLUGIN, vm.id, 'migrate.sock')}`);
    // What the plugin saw the VMM write (/proc/<pid>/io) up to its last reading: with `local` the memory goes as file
    // descriptors, and a migration over before the first poll, its VMM gone, leaves nothing seen (0; seen under load).
    expect(report.transferredBytes).toBeGreaterThanOrEqual(0);
    expect(report.downtimeMs).toBeGreaterThanOrEqual(0);
    expect(report.totalMs).toBeGreaterThanOrEqual(report.downtimeMs ?? 0);
    // No percentage: the API measures no progress; each memory iteration is reported as it is sent.
    expect(progress.map((p) => p.value.message)).toContain('memory iteration 0 sent');
    expect((await a.host.records()).records).toEqual([]);
    const [record, ...more] = (await b.host.records()).records;
    expect(more).toEqual([]);
    expect(record).toMatchObject({ vmId: vm.id, status: 'running', config: { name: 'mover' } });
    expect(record?.migration).toBeUndefined();
    await eventually(() => !alive(srcPid), 10_000, 'the source VMM exits');
    expect(existsSync(srcDir)).toBe(false);
    expect(await a.host.vm(vm.id)).toBeUndefined();

    const moved = (await b.host.vm(vm.id))!;
    const info = await moved.info();
    expect(info).toMatchObject({ status: 'running', devices: [{ id: 'd0', type: 'block' }] });
    expect(info.pid).not.toBe(srcPid);
    // The config came with the stream; the files it names are the destination VMM's own.
    const dstDir = join(b.runtimeDir, PLUGIN, vm.id);
    expect(await moved.console()).toEqual({ kind: 'log', path: join(dstDir, 'console.log') });
    expect((await stat(join(dstDir, 'agent.vsock'))).isSocket()).toBe(true);
    const events = recordEvents(moved);
    expect((await moved.pause()).status).toBe('paused');
    expect((await moved.resume()).status).toBe('running');
    expect(types(events)).toEqual(['paused', 'resumed']);

    // And back over TCP: the destination listens on the address given, on a port the kernel gave its plugin.
    const back = await b.host.migrate(vm.id, a.host, { address: '127.0.0.1' });
    expect(back.uri).toMatch(/^tcp:127\.0\.0\.1:\d+$/);
    expect((await b.host.records()).records).toEqual([]);
    expect((await a.host.records()).records).toMatchObject([{ vmId: vm.id, status: 'running' }]);
    const home = (await a.host.vm(vm.id))!;
    expect((await home.info()).status).toBe('running');
    expect(existsSync(dstDir)).toBe(false);
    await home.delete();
  });

  it('a VM that cannot go stays where it was: paused (refused), or its destination gone (the VMM resumes it)', async () => {
    const a = await setup();
    const b = await setup();
    const vm = await a.hv.createVm({ config: config(a) });
    await vm.start();
    await vm.pause();
    // A paused VM would arrive paused and never be announced running there.
    await expect(a.host.migrate(vm.id, b.host)).rejects.toBeInstanceOf(InvalidStateError);
    expect((await b.host.records()).records).toEqual([]);
    expect((await vm.resume()).status).toBe('running');

    // The destination half alone, then its VMM killed: the source's worker cannot connect.
    const events = recordEvents(vm);
    const { vm: incoming, answer } = await b.hv.bringUpWith('vm/receiveMigration', { config: config(b) });
    expect(incoming.status).toBe('created');
    // Its VMM answers no request while it waits (the control loop runs the migration): the plugin answers these.
    expect((await incoming.info()).status).toBe('created');
    expect((await incoming.check()).ok).toBe(true);
    // A destination that takes the stream in TLS only (a QEMU one with credentials): this plugin sends plaintext, so
    // it refuses before sending anything, rather than have the handshake cut the stream.
    await expect(vm.migrate({ uri: answer.uri, tls: true })).rejects.toBeInstanceOf(NotSupportedError);
    expect((await vm.info()).status).toBe('running');
    await incoming.delete();
    await expect(vm.migrate({ uri: answer.uri })).rejects.toBeInstanceOf(VmmFailureError);
    expect((await vm.info()).status).toBe('running');
    // The pause of the migration's last phase (had it got there) and the resume after it are no VM events.
    expect(types(events)).toEqual([]);
    expect((await vm.pause()).status).toBe('paused');
    await vm.delete();
  });
});
