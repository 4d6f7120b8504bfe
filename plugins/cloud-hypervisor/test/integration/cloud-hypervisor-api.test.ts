// The plugin's REST client against a Cloud Hypervisor VMM: the real binary where `cloud-hypervisor` is
// on PATH and /dev/kvm works, the contract double everywhere else (the log says which). Status codes
// where the OpenAPI document and the implementation disagree are asserted per target: the double
// answers the documented code by default, the real binary the implemented one.
import { readdirSync, readFileSync } from 'node:fs';
import { truncate, writeFile, access, mkdir } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { ChApiError, ChConnectionError, CloudHypervisorClient, type ChEndpoint } from '../../src/api-client.js';
import type { VmConfig } from '../../src/api-types.js';
import { bundleDouble, removeDoubleBundle } from '../../test-support/double-bundle.js';
import { chooseTarget, startVmm, targetFor, type VmmProcess, type VmmTarget } from '../../test-support/vmm-process.js';
import { alive, eventually, removeTempDirs, tempDir } from '../../../../test/helpers.js';

/** For the real binary a booted VM needs a real kernel, which only the environment can give. */
const realKernel = process.env.HVPLUG_CH_KERNEL;
const canBoot = (): boolean => choice.kind === 'double' || realKernel !== undefined;

const choice = chooseTarget();
let target: VmmTarget;
const running: VmmProcess[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  target = targetFor(choice, choice.kind === 'double' ? await bundleDouble() : undefined);
  console.info(`[cloud-hypervisor] API tests target the ${choice.kind === 'real' ? 'REAL cloud-hypervisor binary' : 'contract double'} (${choice.reason})`);
  if (choice.kind === 'real' && !realKernel) console.info('[cloud-hypervisor] HVPLUG_CH_KERNEL is not set: tests that boot a VM are skipped on the real binary');
  if (choice.kind === 'real') console.info('[cloud-hypervisor] double-only tests (guest process, OpenAPI-only rules, status-code modes) are skipped');
}, 60_000);

afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop()));
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  await removeTempDirs();
});

afterAll(async () => {
  await removeDoubleBundle();
});

const isDouble = (): boolean => choice.kind === 'double';

interface Vmm {
  readonly proc: VmmProcess;
  readonly client: CloudHypervisorClient;
  readonly dir: string;
  readonly events: string;
  /** 'documented' or 'implemented': which status code column this VMM answers with. */
  readonly statusMode: 'documented' | 'implemented';
}

async function startTarget(opts: { env?: Record<string, string>; extraArgs?: string[] } = {}): Promise<Vmm> {
  const dir = await tempDir('ch-api-');
  const events = join(dir, 'events.json');
  const proc = await startVmm(target, { socketPath: join(dir, 'api.sock'), eventFile: events, env: opts.env, extraArgs: opts.extraArgs });
  running.push(proc);
  const client = new CloudHypervisorClient({ socketPath: proc.socketPath, timeoutMs: 10_000 });
  await client.waitReady({ timeoutMs: 10_000 });
  const statusMode = target.kind === 'real' || opts.env?.CH_DOUBLE_STATUS_CODES === 'implemented' ? 'implemented' : 'documented';
  return { proc, client, dir, events, statusMode };
}

async function vmConfig(dir: string, extra: Partial<VmConfig> = {}): Promise<VmConfig> {
  let kernel = realKernel;
  if (isDouble()) {
    kernel = join(dir, 'vmlinux');
    await writeFile(kernel, 'not a kernel: the double only opens it');
  }
  const disk = join(dir, 'root.img');
  await writeFile(disk, '');
  await truncate(disk, 1 << 20);
  return {
    cpus: { boot_vcpus: 1, max_vcpus: 2 },
    memory: { size: 256 << 20 },
    payload: { kernel: kernel ?? '/nonexistent', cmdline: 'console=ttyS0 panic=-1' },
    disks: [{ path: disk }],
    ...extra,
  };
}

type Expected = number | { documented: number; implemented: number };

async function failure(p: Promise<unknown>): Promise<ChApiError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ChApiError)) throw new Error(`expected a ChApiError, got ${String(err)}`);
  return err;
}

async function expectStatus(vmm: Vmm, p: Promise<unknown>, endpoint: ChEndpoint, expected: Expected): Promise<ChApiError> {
  const err = await failure(p);
  const want = typeof expected === 'number' ? expected : expected[vmm.statusMode];
  expect({ endpoint: err.endpoint, status: err.status }).toEqual({ endpoint, status: want });
  // The VMM's own words reach the caller: Cloud Hypervisor's error body is the error chain.
  expect(err.messages.length).toBeGreaterThan(0);
  expect(err.message).toContain(err.messages[0]!);
  return err;
}

/** A raw request, for bodies the typed client cannot produce. */
function raw(socketPath: string, method: string, path: string, body?: string, headers: Record<string, string | number> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const hdrs: Record<string, string | number> = body === undefined ? { 'Content-Length': 0, ...headers } : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...headers };
    const r = request({ socketPath, method, path, headers: hdrs, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

describe('Cloud Hypervisor REST API', () => {
  it('vmm.ping answers with the VMM version and its pid', async () => {
    const vmm = await startTarget();
    const pong = await vmm.client.ping();
    expect(pong.version).toMatch(/^\d+\.\d+/);
    expect(pong.pid).toBe(vmm.proc.child.pid);
  });

  it('before vm.create every VM action fails; vm.delete is a no-op', async () => {
    const vmm = await startTarget();
    const c = vmm.client;
    const notRunning = { documented: 404, implemented: 500 };
    await expectStatus(vmm, c.vmInfo(), 'vm.info', 404);
    const boot = await expectStatus(vmm, c.bootVm(), 'vm.boot', 404);
    expect(boot.messages).toContain('VM config is missing');
    await expectStatus(vmm, c.pauseVm(), 'vm.pause', notRunning);
    await expectStatus(vmm, c.resumeVm(), 'vm.resume', notRunning);
    await expectStatus(vmm, c.shutdownVm(), 'vm.shutdown', notRunning);
    await expectStatus(vmm, c.rebootVm(), 'vm.reboot', 404);
    await expectStatus(vmm, c.snapshotVm({ destination_url: `file://${vmm.dir}` }), 'vm.snapshot', notRunning);
    await expectStatus(vmm, c.vmCounters(), 'vm.counters', 500);
    await expectStatus(vmm, c.addDisk({ path: '/x' }), 'vm.add-disk', 404);
    await expectStatus(vmm, c.addNet({}), 'vm.add-net', 404);
    await expectStatus(vmm, c.addFs({ tag: 't', socket: '/s', num_queues: 1, queue_size: 1024 }), 'vm.add-fs', 404);
    await expectStatus(vmm, c.addVsock({ cid: 3, socket: join(vmm.dir, 'v.sock') }), 'vm.add-vsock', 404);
    await expectStatus(vmm, c.addDevice({ path: '/sys/bus/pci/devices/0000:00:00.0' }), 'vm.add-device', 404);
    await expectStatus(vmm, c.removeDevice({ id: 'x' }), 'vm.remove-device', 404);
    await expectStatus(vmm, c.resizeVm({ desired_vcpus: 2 }), 'vm.resize', 404);
    await expect(c.deleteVm()).resolves.toBeUndefined();
  });

  it('vm.create stores the config, vm.info reports it Created with defaults filled in, a second create fails', async () => {
    const vmm = await startTarget();
    const config = await vmConfig(vmm.dir);
    await vmm.client.createVm(config);
    const info = await vmm.client.vmInfo();
    expect(info.state).toBe('Created');
    expect(info.config.payload).toMatchObject(config.payload);
    expect(info.config.cpus).toMatchObject({ boot_vcpus: 1, max_vcpus: 2 });
    expect(info.config.disks?.[0]).toMatchObject({ path: config.disks?.[0]?.path, readonly: false });
    expect(info.config.rng?.src).toBe('/dev/urandom');
    expect(info.device_tree).toBeUndefined();
    const again = await expectStatus(vmm, vmm.client.createVm(config), 'vm.create', 500);
    expect(again.messages).toContain('VM is already created');
  });

  it('in Created, actions that need a booted VM fail (405 documented, 500 or 404 implemented)', async () => {
    const vmm = await startTarget();
    const c = vmm.client;
    await c.createVm(await vmConfig(vmm.dir));
    await expectStatus(vmm, c.pauseVm(), 'vm.pause', { documented: 405, implemented: 500 });
    await expectStatus(vmm, c.resumeVm(), 'vm.resume', { documented: 404, implemented: 500 });
    await expectStatus(vmm, c.shutdownVm(), 'vm.shutdown', { documented: 405, implemented: 500 });
    await expectStatus(vmm, c.rebootVm(), 'vm.reboot', { documented: 405, implemented: 404 });
    await expectStatus(vmm, c.snapshotVm({ destination_url: `file://${vmm.dir}` }), 'vm.snapshot', { documented: 405, implemented: 500 });
    await expectStatus(vmm, c.vmCounters(), 'vm.counters', 500);
    expect((await c.vmInfo()).state).toBe('Created');
  });

  it('before boot, add-* cold-adds to the config (204, no PciDeviceInfo) and remove-device takes it out', async () => {
    const vmm = await startTarget();
    const c = vmm.client;
    await c.createVm(await vmConfig(vmm.dir));
    const extra = join(vmm.dir, 'extra.img');
    await writeFile(extra, '');
    expect(await c.addDisk({ path: extra, id: 'extra' })).toBeUndefined();
    expect(await c.addNet({ id: 'net9', mac: '12:34:56:78:90:ab' })).toBeUndefined();
    let info = await c.vmInfo();
    expect(info.config.disks?.map((d) => d.id)).toEqual([undefined, 'extra']);
    expect(info.config.net?.map((n) => n.id)).toEqual(['net9']);
    await c.removeDevice({ id: 'extra' });
    info = await c.vmInfo();
    expect(info.config.disks?.map((d) => d.id)).toEqual([undefined]);
    const missing = await expectStatus(vmm, c.removeDevice({ id: 'extra' }), 'vm.remove-device', 404);
    expect(missing.messages.join(' ')).toContain('extra');
    await expectStatus(vmm, c.addDisk({ path: extra, id: 'net9' }), 'vm.add-disk', 409);
    await expectStatus(vmm, c.addDisk({ path: extra, id: '__reserved' }), 'vm.add-disk', 400);
  });

  it.skipIf(!canBoot())('vm.boot runs the VM; pause and resume move it between Running and Paused, wrong states fail', async () => {
    const vmm = await startTarget();
    const c = vmm.client;
    await c.createVm(await vmConfig(vmm.dir));
    await c.bootVm();
    let info = await c.vmInfo();
    expect(info.state).toBe('Running');
    const tree = Object.values(info.device_tree ?? {});
    expect(tree.some((d) => d.id === info.config.disks?.[0]?.id)).toBe(true);
    expect(tree.every((d) => /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(d.pci_bdf ?? ''))).toBe(true);
    const counters = await c.vmCounters();
    const diskId = info.config.disks?.[0]?.id ?? '';
    expect(counters[diskId]).toMatchObject({ read_bytes: 0, write_bytes: 0 });
    await expectStatus(vmm, c.bootVm(), 'vm.boot', 500);
    await expectStatus(vmm, c.resumeVm(), 'vm.resume', { documented: 405, implemented: 500 });
    await expectStatus(vmm, c.snapshotVm({ destination_url: `file://${vmm.dir}` }), 'vm.snapshot', 500);
    await c.pauseVm();
    expect((await c.vmInfo()).state).toBe('Paused');
    await expectStatus(vmm, c.pauseVm(), 'vm.pause', 500);
    await c.resumeVm();
    info = await c.vmInfo();
    expect(info.state).toBe('Running');
  });

  it.skipIf(!canBoot())('hot-plug answers PciDeviceInfo; duplicate ids 409, reserved ids 400, missing images 500; removal', async () => {
    const vmm = await startTarget();
    const c = vmm.client;
    await c.createVm(await vmConfig(vmm.dir));
    await c.bootVm();
    const extra = join(vmm.dir, 'extra.img');
    await writeFile(extra, '');
    await truncate(extra, 1 << 20);
    const disk = await c.addDisk({ path: extra, id: 'hot0' });
    expect(disk).toEqual({ id: 'hot0', bdf: expect.stringMatching(/^0000:00:[0-9a-f]{2}\.0$/) as unknown });
    const unnamed = await c.addDisk({ path: extra, readonly: true });
    expect(unnamed?.id).toMatch(/^_disk\d+$/);
    expect(unnamed?.bdf).not.toBe(disk?.bdf);
    await expectStatus(vmm, c.addDisk({ path: extra, id: 'hot0' }), 'vm.add-disk', 409);
    await expectStatus(vmm, c.addDisk({ path: extra, id: '__x' }), 'vm.add-disk', 400);
    const gone = await expectStatus(vmm, c.addDisk({ path: join(vmm.dir, 'absent.img') }), 'vm.add-disk', 500);
    expect(gone.messages.join(' ')).toMatch(/No such file or directory/);
    const info = await c.vmInfo();
    expect(info.config.disks?.map((d) => d.id)).toContain('hot0');
    expect(Object.keys(info.device_tree ?? {})).toContain('hot0');
    await c.removeDevice({ id: 'hot0' });
    expect(Object.keys((await c.vmInfo()).device_tree ?? {})).not.toContain('hot0');
    await expectStatus(vmm, c.removeDevice({ id: 'hot0' }), 'vm.remove-device', 404);
  });

  it.skipIf(!canBoot())('vm.add-vsock creates the host socket, allows one vsock device, and removal deletes the socket', async () => {
    const vmm = await startTarget();
    const c = vmm.client;
    await c.createVm(await vmConfig(vmm.dir));
    await c.bootVm();
    const socket = join(vmm.dir, 'vsock.sock');
    const dev = await c.addVsock({ cid: 3, socket, id: 'vsock0' });
    expect(dev?.id).toBe('vsock0');
    await expect(access(socket)).resolves.toBeUndefined();
    const second = await expectStatus(vmm, c.addVsock({ cid: 4, socket: join(vmm.dir, 'v2.sock') }), 'vm.add-vsock', 500);
    expect(second.messages).toContain('Too many virtio-vsock devices');
    await c.removeDevice({ id: 'vsock0' });
    await eventually(() => access(socket).then(() => false, () => true), 5_000, 'vsock socket removal');
  });

  it.skipIf(!isDouble())('vm.add-fs needs a listening virtio-fs backend; vm.add-device a VFIO device path (double only: the real ones need virtiofsd and a VFIO device)', async () => {
    const vmm = await startTarget();
    const c = vmm.client;
    await c.createVm(await vmConfig(vmm.dir));
    await c.bootVm();
    const fsSock = join(vmm.dir, 'virtiofsd.sock');
    const fs = { tag: 'share', socket: fsSock, num_queues: 1, queue_size: 1024, id: 'fs0' };
    const down = await expectStatus(vmm, c.addFs(fs), 'vm.add-fs', 500);
    expect(down.messages).toContain('Cannot create virtio-fs device');
    const backend = createServer((s) => s.destroy());
    servers.push(backend);
    await new Promise<void>((r) => backend.listen(fsSock, r));
    expect(await c.addFs(fs)).toMatchObject({ id: 'fs0' });
    const vfio = join(vmm.dir, 'sys-device');
    await mkdir(vfio);
    expect(await c.addDevice({ path: vfio, id: 'vfio0' })).toMatchObject({ id: 'vfio0' });
    await expectStatus(vmm, c.addDevice({ path: vfio, id: 'vfio1' }), 'vm.add-device', 409);
    await expectStatus(vmm, c.addDevice({ path: join(vmm.dir, 'absent') }), 'vm.add-device', 500);
  });

  it.skipIf(!canBoot())('vm.resize changes vCPUs and memory and refuses more vCPUs than max_vcpus', async () => {
    const vmm = await startTarget();
    const c = vmm.client;
    await c.createVm(await vmConfig(vmm.dir, { memory: { size: 256 << 20, hotplug_size: 256 << 20 } }));
    await c.resizeVm({ desired_vcpus: 2 });
    expect((await c.vmInfo()).config.cpus?.boot_vcpus).toBe(2);
    await c.bootVm();
    await c.resizeVm({ desired_vcpus: 1, desired_ram: 384 << 20 });
    const info = await c.vmInfo();
    expect(info.config.cpus?.boot_vcpus).toBe(1);
    expect(info.config.memory?.size).toBe(384 << 20);
    const tooMany = await expectStatus(vmm, c.resizeVm({ desired_vcpus: 3 }), 'vm.resize', 500);
    expect(tooMany.messages).toContain('Requested vCPUs exceed maximum');
  });

  it.skipIf(!canBoot())('snapshot needs a Paused VM and a file:// directory; restore brings it back Paused into a fresh VMM', async () => {
    const vmm = await startTarget();
    const c = vmm.client;
    const config = await vmConfig(vmm.dir);
    await c.createVm(config);
    await c.bootVm();
    await c.pauseVm();
    const snap = join(vmm.dir, 'snap');
    await mkdir(snap);
    await expectStatus(vmm, c.snapshotVm({ destination_url: snap }), 'vm.snapshot', 500);
    await expectStatus(vmm, c.snapshotVm({ destination_url: `file://${join(vmm.dir, 'absent')}` }), 'vm.snapshot', 500);
    await c.snapshotVm({ destination_url: `file://${snap}` });
    expect(readdirSync(snap)).toEqual(expect.arrayContaining(['config.json', 'state.json']));
    // The real VMM creates the files with create_new: a second snapshot into the same directory fails.
    await expectStatus(vmm, c.snapshotVm({ destination_url: `file://${snap}` }), 'vm.snapshot', 500);
    await expectStatus(vmm, c.restoreVm({ source_url: `file://${snap}` }), 'vm.restore', { documented: 404, implemented: 500 });
    const before = await c.vmInfo();

    const other = await startTarget();
    await other.client.restoreVm({ source_url: `file://${snap}` });
    const restored = await other.client.vmInfo();
    expect(restored.state).toBe('Paused');
    expect(restored.config).toEqual(before.config);
    await other.client.resumeVm();
    expect((await other.client.vmInfo()).state).toBe('Running');

    const third = await startTarget();
    await third.client.restoreVm({ source_url: `file://${snap}`, resume: true });
    expect((await third.client.vmInfo()).state).toBe('Running');
    const none = await startTarget();
    await expectStatus(none, none.client.restoreVm({ source_url: `file://${join(vmm.dir, 'absent')}` }), 'vm.restore', 500);
  });

  it.skipIf(!canBoot())('vm.reboot keeps it Running, vm.shutdown leaves it Created, vm.delete removes it', async () => {
    const vmm = await startTarget();
    const c = vmm.client;
    await c.createVm(await vmConfig(vmm.dir));
    await c.bootVm();
    await c.rebootVm();
    expect((await c.vmInfo()).state).toBe('Running');
    await c.shutdownVm();
    expect((await c.vmInfo()).state).toBe('Created');
    await c.bootVm();
    expect((await c.vmInfo()).state).toBe('Running');
    await c.deleteVm();
    await expectStatus(vmm, c.vmInfo(), 'vm.info', 404);
  });

  it.skipIf(!canBoot() || !isDouble())('vm.boot fails with the VMM message when the kernel cannot be opened', async () => {
    const vmm = await startTarget();
    await vmm.client.createVm(await vmConfig(vmm.dir, { payload: { kernel: join(vmm.dir, 'no-kernel') } }));
    const err = await expectStatus(vmm, vmm.client.bootVm(), 'vm.boot', 500);
    expect(err.messages).toEqual(['Error from API', 'The VM could not boot', 'Cannot open kernel file', 'No such file or directory (os error 2)']);
    expect((await vmm.client.vmInfo()).state).toBe('Created');
  });
});

describe('the target is strict about request bodies', () => {
  it('rejects a VmConfig with cpus.boot_vcpus as a string with 400 and a deserialisation message', async () => {
    const vmm = await startTarget();
    const res = await raw(vmm.proc.socketPath, 'PUT', '/api/v1/vm.create', JSON.stringify({ cpus: { boot_vcpus: '2', max_vcpus: 2 }, payload: { kernel: '/k' } }));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toEqual(expect.arrayContaining(['Failed to deserialize JSON']));
    await expectStatus(vmm, vmm.client.vmInfo(), 'vm.info', 404);
  });

  it('rejects malformed JSON, a vsock cid below 3, and a snapshot without destination_url', async () => {
    const vmm = await startTarget();
    const s = vmm.proc.socketPath;
    expect((await raw(s, 'PUT', '/api/v1/vm.create', '{"payload":')).status).toBe(400);
    expect((await raw(s, 'PUT', '/api/v1/vm.add-vsock', JSON.stringify({ cid: 'three', socket: '/s' }))).status).toBe(400);
    expect((await raw(s, 'PUT', '/api/v1/vm.snapshot', '{}')).status).toBe(400);
    expect((await raw(s, 'PUT', '/api/v1/vm.remove-device', '{}')).status).toBe(400);
  });

  it.skipIf(!isDouble())('rejects a VmConfig without payload (OpenAPI requires it; the real binary defers this to boot)', async () => {
    const vmm = await startTarget();
    const res = await raw(vmm.proc.socketPath, 'PUT', '/api/v1/vm.create', JSON.stringify({ cpus: { boot_vcpus: 1, max_vcpus: 1 } }));
    expect(res.status).toBe(400);
    expect(res.body).toContain("required property 'payload'");
    await expect(raw(vmm.proc.socketPath, 'PUT', '/api/v1/vm.add-fs', JSON.stringify({ tag: 't' }))).resolves.toMatchObject({ status: 400 });
  });

  it('answers 400 for a body on a body-less action, a wrong method, a missing body; 404 for an unknown route', async () => {
    const vmm = await startTarget();
    const s = vmm.proc.socketPath;
    expect((await raw(s, 'PUT', '/api/v1/vm.boot', '{}')).status).toBe(400);
    expect((await raw(s, 'GET', '/api/v1/vm.boot')).status).toBe(400);
    expect((await raw(s, 'PUT', '/api/v1/vm.info')).status).toBe(400);
    expect((await raw(s, 'PUT', '/api/v1/vm.add-disk')).status).toBe(400);
    expect((await raw(s, 'PUT', '/api/v1/vm.create')).status).toBe(400);
    const unknown = await raw(s, 'PUT', '/api/v1/vm.frobnicate');
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body)).toEqual(['Not Found']);
  });

  it('does not see a chunked body, as micro_http reads bodies only through Content-Length', async () => {
    const vmm = await startTarget();
    const body = JSON.stringify({ payload: { kernel: '/k' } });
    const res = await new Promise<number>((resolve, reject) => {
      const r = request({ socketPath: vmm.proc.socketPath, method: 'PUT', path: '/api/v1/vm.create', headers: { 'Transfer-Encoding': 'chunked', 'Content-Type': 'application/json' }, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      r.on('error', reject);
      r.end(body);
    });
    expect(res).toBe(400);
  });
});

/** A VMM of the double with its VM booted, and the pid of its guest process. */
async function bootedGuest(opts: Parameters<typeof startTarget>[0] = {}): Promise<{ vmm: Vmm; guest: number }> {
  const vmm = await startTarget(opts);
  await vmm.client.createVm(await vmConfig(vmm.dir));
  await vmm.client.bootVm();
  const pid = vmm.proc.child.pid!;
  await eventually(() => childrenOf(pid).length === 1, 5_000, 'the guest process');
  return { vmm, guest: childrenOf(pid)[0]! };
}

/** Direct children of a process, from /proc (the double's guest). */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0];
  } catch {
    return undefined;
  }
}

describe('the VMM going away', () => {
  it('vmm.shutdown is answered, then the VMM exits 0 and removes its socket; later calls fail with ENOENT', async () => {
    const vmm = await startTarget();
    await vmm.client.shutdownVmm();
    expect(await vmm.proc.exited).toEqual({ code: 0, signal: null });
    await expect(access(vmm.proc.socketPath)).rejects.toThrow();
    const err = await vmm.client.ping().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChConnectionError);
    expect(err).toMatchObject({ endpoint: 'vmm.ping', code: 'ENOENT' });
  });

  it('SIGTERM shuts the VMM down cleanly; SIGKILL leaves a dead socket that refuses connections', async () => {
    const a = await startTarget();
    a.proc.child.kill('SIGTERM');
    expect(await a.proc.exited).toEqual({ code: 0, signal: null });
    await expect(access(a.proc.socketPath)).rejects.toThrow();

    const b = await startTarget();
    b.proc.child.kill('SIGKILL');
    await b.proc.exited;
    const err = await b.client.vmInfo().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChConnectionError);
    expect(err).toMatchObject({ endpoint: 'vm.info', code: 'ECONNREFUSED' });
  });

  it.skipIf(!isDouble())('the guest is a real process: paused is SIGSTOPped, and it dies with the VMM', async () => {
    const { vmm, guest } = await bootedGuest();
    await vmm.client.pauseVm();
    await eventually(() => procState(guest) === 'T', 5_000, 'the guest to stop');
    await vmm.client.resumeVm();
    await eventually(() => procState(guest) !== 'T', 5_000, 'the guest to continue');
    vmm.proc.child.kill('SIGKILL');
    await eventually(() => !alive(guest), 5_000, 'the orphaned guest to exit');
  });

  it.skipIf(!isDouble())('a paused guest dies with a SIGKILLed VMM too (a stopped process cannot look for its parent)', async () => {
    const { vmm, guest } = await bootedGuest();
    await vmm.client.pauseVm();
    await eventually(() => procState(guest) === 'T', 5_000, 'the guest to stop');
    vmm.proc.child.kill('SIGKILL');
    try {
      await eventually(() => !alive(guest), 5_000, 'the paused orphaned guest to exit');
    } finally {
      // Not left behind stopped when the check fails.
      if (alive(guest)) process.kill(guest, 'SIGKILL');
    }
  });

  it.skipIf(!isDouble())('a guest that exits takes the VMM down, or with --no-shutdown leaves the VM Created', async () => {
    const a = await bootedGuest();
    process.kill(a.guest, 'SIGKILL');
    expect(await a.vmm.proc.exited).toEqual({ code: 0, signal: null });

    const b = await bootedGuest({ extraArgs: ['--no-shutdown'] });
    process.kill(b.guest, 'SIGKILL');
    await eventually(async () => (await b.vmm.client.vmInfo()).state === 'Created', 5_000, 'the VM to be shut down');
  });
});

describe.skipIf(!isDouble())('status codes as implemented (CH_DOUBLE_STATUS_CODES=implemented)', () => {
  it('answers the Rust implementation codes and 200 for vmm.shutdown', async () => {
    const vmm = await startTarget({ env: { CH_DOUBLE_STATUS_CODES: 'implemented' } });
    await vmm.client.createVm(await vmConfig(vmm.dir));
    await expectStatus(vmm, vmm.client.pauseVm(), 'vm.pause', 500);
    await expectStatus(vmm, vmm.client.rebootVm(), 'vm.reboot', 404);
    const res = await raw(vmm.proc.socketPath, 'PUT', '/api/v1/vmm.shutdown');
    expect(res.status).toBe(200);
    expect(await vmm.proc.exited).toEqual({ code: 0, signal: null });
  });

  it('the client treats vmm.shutdown answered with 200 or 204 as success', async () => {
    for (const mode of ['documented', 'implemented']) {
      const vmm = await startTarget({ env: { CH_DOUBLE_STATUS_CODES: mode } });
      await expect(vmm.client.shutdownVmm()).resolves.toBeUndefined();
      await vmm.proc.exited;
    }
  });
});

/** The `event` names an event-monitor file holds, in order. */
function eventNames(file: string): string[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return [...text.matchAll(/"event": "([^"]+)"/g)].map((m) => m[1]!);
}

/** A TCP port nobody listens on right now. */
function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a !== null && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

describe('live migration (vm.receive-migration, vm.send-migration)', () => {
  for (const transport of ['unix', 'tcp'] as const) {
    it.skipIf(!canBoot())(`moves a Running VM over ${transport}: the destination runs it with the source's config, the source VMM exits 0`, async () => {
      const src = await startTarget();
      // local (memory as file descriptors) needs shared memory; the plugin always shares it.
      await src.client.createVm(await vmConfig(src.dir, { memory: { size: 256 << 20, shared: true } }));
      await src.client.bootVm();
      const before = await src.client.vmInfo();
      const dst = await startTarget();
      const url = transport === 'unix' ? `unix:${join(dst.dir, 'migrate.sock')}` : `tcp:127.0.0.1:${await freeTcpPort()}`;
      // The destination answers only once the VM is in: the request stays open meanwhile.
      const received = dst.client.receiveMigration({ receiver_url: url }, { timeoutMs: 60_000 });
      await eventually(() => eventNames(dst.events).includes('migration-receive-ready'), 10_000, 'the destination listens');
      await src.client.sendMigration({ destination_url: url, ...(transport === 'unix' ? { local: true } : {}) });
      await received;

      const after = await dst.client.vmInfo();
      expect(after.state).toBe('Running');
      expect(after.config).toEqual(before.config);
      expect(await src.proc.exited).toEqual({ code: 0, signal: null });
      const sent = eventNames(src.events);
      expect(sent.filter((e) => e.startsWith('migration-') || e === 'paused')).toEqual(['migration-started', 'migration-memory-iteration', 'paused', 'migration-finished']);
      expect(eventNames(dst.events)).toEqual(expect.arrayContaining(['migration-receive-ready', 'migration-receive-started', 'restored', 'resumed', 'migration-receive-finished']));
      expect(eventNames(dst.events).indexOf('resumed')).toBeLessThan(eventNames(dst.events).indexOf('migration-receive-finished'));
      // The VM there is a VM like another: it pauses, resumes, shuts down.
      await dst.client.pauseVm();
      await dst.client.resumeVm();
      await dst.client.shutdownVm();
      expect((await dst.client.vmInfo()).state).toBe('Created');
    });
  }

  it.skipIf(!canBoot())('refuses what the API refuses; a destination nobody listens on fails the worker and the VM runs on', async () => {
    const src = await startTarget();
    const none = await startTarget();
    const at = `unix:${join(src.dir, 'nobody.sock')}`;
    const sendRefused = async (vmm: Vmm, data: Parameters<CloudHypervisorClient['sendMigration']>[0], message: string): Promise<void> => {
      const err = await expectStatus(vmm, vmm.client.sendMigration(data), 'vm.send-migration', 500);
      expect(err.messages.join(': ')).toContain(message);
    };
    await sendRefused(none, { destination_url: at }, 'VM is not running');
    await src.client.createVm(await vmConfig(src.dir));
    await sendRefused(src, { destination_url: at }, 'VM is not running');
    await src.client.bootVm();
    await sendRefused(src, { destination_url: 'http://example.com/' }, 'destination_url must use tcp:<host>:<port> or unix:<path>.');
    await sendRefused(src, { destination_url: 'tcp:127.0.0.1:1', local: true }, 'local option is only supported with UNIX sockets.');
    await sendRefused(src, { destination_url: at, connections: 2 }, 'UNIX sockets and connections option cannot be used at the same time.');
    // vmConfig's memory is not shared: its pages cannot go as file descriptors.
    await sendRefused(src, { destination_url: at, local: true }, 'Local migration requires shared memory or hugepages enabled');
    // Bodies the document rejects never reach the VMM.
    expect((await raw(src.proc.socketPath, 'PUT', '/api/v1/vm.send-migration', JSON.stringify({ destination_url: at, downtime_ms: 0 }))).status).toBe(400);
    expect((await raw(none.proc.socketPath, 'PUT', '/api/v1/vm.receive-migration', JSON.stringify({ url: at }))).status).toBe(400);

    // The worker, not the request, connects: the request is answered, the failure is in the event monitor.
    await src.client.sendMigration({ destination_url: at });
    await eventually(() => eventNames(src.events).includes('migration-failed'), 10_000, 'migration-failed');
    await eventually(async () => (await src.client.vmInfo()).state === 'Running', 10_000, 'the VM runs on at the source');
    await src.client.pauseVm();
    await src.client.resumeVm();

    const receiveRefused = async (vmm: Vmm, url: string, message: string): Promise<void> => {
      const err = await expectStatus(vmm, vmm.client.receiveMigration({ receiver_url: url }), 'vm.receive-migration', 500);
      expect(err.messages.join(': ')).toContain(message);
    };
    await receiveRefused(src, `unix:${join(src.dir, 'in.sock')}`, "Can't receive a migration when a VM is already created");
    await receiveRefused(none, 'http://example.com/', 'Expected receiver_url to either use `tcp` or `unix` prefix');
    await receiveRefused(none, 'tcp:127.0.0.1', 'Missing TCP port');
    await receiveRefused(none, `unix:${join(src.dir, 'no-such-dir', 'in.sock')}`, 'Error binding to UNIX socket');
  });

  it.skipIf(!isDouble())('a stream that breaks off aborts the receiver: 500, migration-receive-failed, no VM; the double takes no stream but its own', async () => {
    const dst = await startTarget();
    const sock = join(dst.dir, 'migrate.sock');
    const received = dst.client.receiveMigration({ receiver_url: `unix:${sock}` }, { timeoutMs: 30_000 });
    await eventually(() => eventNames(dst.events).includes('migration-receive-ready'), 10_000, 'the destination listens');
    const s = connect(sock);
    await new Promise((r) => s.once('connect', r));
    s.end('{"not":"a double"}\n');
    const err = await expectStatus(dst, received, 'vm.receive-migration', 500);
    expect(err.messages).toEqual(['Error from API', 'Error receiving migration', 'Failed to complete migration for migratable component', 'Migration was aborted']);
    expect(eventNames(dst.events)).toContain('migration-receive-failed');
    await expectStatus(dst, dst.client.vmInfo(), 'vm.info', 404);
  });
});
