import { existsSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import type { ShimVm } from 'hvplug';
import {
  DEVICE_TYPES,
  type MethodName,
  type Methods,
  type ParamsInputOf,
  type ResultOf,
  type VmConfigInput,
} from 'hvplug/protocol';
import { expect, expectRejection, fail, SkipCheck, sleep, within } from './check.js';
import { PATH_TO, type Fixture, type PreparedStatus } from './fixture.js';
import { isAlive } from './processes.js';
import { expectDeviceListed, expectStatus } from './vm-report.js';

/** The methods a plugin may advertise. */
export type GatedMethod = { [M in MethodName]: Methods[M]['gated'] extends true ? M : never }[MethodName];
type VmMethod = { [M in GatedMethod]: Methods[M]['scope'] extends 'vm' ? M : never }[GatedMethod];

/** A method's params as its case writes them: the vmId is the suite's to bind. */
export type CaseParams<M extends GatedMethod> = Methods[M]['scope'] extends 'vm'
  ? Omit<ParamsInputOf<M>, 'vmId'>
  : Methods[M]['scope'] extends 'new-vm'
    ? Omit<ParamsInputOf<M>, 'vmId'> & { vmId?: string }
    : ParamsInputOf<M>;

export interface Prepared<M extends GatedMethod> {
  /** The VM a vm-scoped call targets. */
  vm?: ShimVm;
  params: CaseParams<M>;
}

export interface MethodCase<M extends GatedMethod> {
  /** The other gated methods the preparation calls. */
  readonly needs: readonly GatedMethod[];
  /** Valid params with nothing prepared: what an unadvertised method is sent to see it refused. */
  offline(fx: Fixture): CaseParams<M>;
  /** Brings the plugin to where the call makes sense: the target VM and the params. */
  prepare(fx: Fixture): Promise<Prepared<M>>;
  /** The call itself, when it is more than one request (vm/wait resolves only once the VM stops). */
  call?(fx: Fixture, prepared: Prepared<M>): Promise<ResultOf<M>>;
  /** The full valid params (vmId bound) with one field broken so that the table's schema rejects them. */
  invalid(valid: Record<string, unknown>): Record<string, unknown>;
  /** What a right answer satisfies beyond its schema (which the shim has checked already). */
  verify?(result: ResultOf<M>, fx: Fixture, prepared: Prepared<M>): Promise<void> | void;
}

/** One case per gated method: adding a method to the table without one here fails the typecheck. */
export type MethodCases = { [M in GatedMethod]: MethodCase<M> };

const MiB = 1 << 20;
/** vm/migrate's destination VM, by source VM id, from its prepare to its verify. */
const migrations = new Map<string, ShimVm>();
const brokenVmId = (v: Record<string, unknown>): Record<string, unknown> => ({ ...v, vmId: 42 });
const relativePath = (v: Record<string, unknown>): Record<string, unknown> => ({ ...v, path: 'relative/path.img' });

/** The common shape: a VM in `status`, the call on it. */
function onVm<M extends VmMethod>(
  status: PreparedStatus,
  c: {
    params?: (fx: Fixture) => CaseParams<M>;
    config?: VmConfigInput;
    needs?: readonly GatedMethod[];
    invalid?: (valid: Record<string, unknown>) => Record<string, unknown>;
    verify?: MethodCase<M>['verify'];
  } = {},
): MethodCase<M> {
  const params = c.params ?? ((): CaseParams<M> => ({}) as CaseParams<M>);
  return {
    needs: [...(PATH_TO[status] as GatedMethod[]), ...(c.needs ?? [])],
    offline: params,
    prepare: async (fx) => ({ vm: await fx.vmIn(status, c.config), params: params(fx) }),
    invalid: c.invalid ?? brokenVmId,
    verify: c.verify,
  };
}

/** A status transition: the answer and vm/info both say the VM reached `to`. */
function transition<M extends 'vm/start' | 'vm/stop' | 'vm/pause' | 'vm/resume'>(
  method: M,
  from: PreparedStatus,
  to: string,
  extra: { params?: (fx: Fixture) => CaseParams<M>; invalid?: (v: Record<string, unknown>) => Record<string, unknown> } = {},
): MethodCase<M> {
  return onVm<M>(from, {
    ...extra,
    verify: (r, fx, p) => expectStatus(fx, p.vm as ShimVm, method, (r as { status: string }).status, to),
  });
}

/** The first device type the plugin can attach in the given way. */
function pluggable(fx: Fixture, how: 'coldplug' | 'hotplug'): (typeof DEVICE_TYPES)[number] | undefined {
  return DEVICE_TYPES.find((t) => fx.caps.devices[t]?.[how]);
}

export const METHOD_CASES: MethodCases = {
  'config/validate': {
    needs: [],
    offline: (fx) => ({ config: fx.config() }),
    prepare: async (fx) => ({ params: { config: fx.config() } }),
    invalid: (v) => ({ ...v, config: { vcpus: { boot: 0 } } }),
    verify: (r, fx) => {
      const sent = fx.config();
      expect(r.config.vcpus.boot >= 1, 'config/validate answered a config without vCPUs');
      expect(!sent.name || r.config.name === sent.name, `config/validate lost the config's name (${String(r.config.name)})`);
    },
  },
  'vm/create': {
    needs: [],
    offline: (fx) => ({ config: fx.config() }),
    prepare: async (fx) => ({ params: { config: fx.config() } }),
    invalid: (v) => ({ ...v, config: { vcpus: { boot: 0 } } }),
    verify: async (r, fx, p) => expectStatus(fx, p.vm as ShimVm, 'vm/create', r.status, 'created'),
  },
  'vm/restore': {
    needs: ['vm/create', 'vm/start', 'vm/pause', 'vm/save'],
    offline: (fx) => ({ config: fx.config(), path: fx.path('absent.snap') }),
    prepare: async (fx) => {
      const source = await fx.vmIn('paused');
      const path = fx.path('restore.snap');
      await source.save({ path }, fx.opts('vm/save'));
      return { params: { config: fx.config(), path } };
    },
    invalid: relativePath,
    verify: async (r, fx, p) => expectStatus(fx, p.vm as ShimVm, 'vm/restore', r.status, 'paused'),
  },
  'vm/recover': {
    needs: ['vm/create', 'vm/start'],
    offline: (fx) => ({ config: fx.config(), state: null }),
    prepare: async (fx) => {
      // The VM of a plugin process that has since gone away: the situation vm/recover exists for.
      const earlier = await fx.connect('aux');
      const vm = await fx.vmIn('running', {}, earlier);
      await fx.run.session.disconnect(earlier);
      return { params: { vmId: vm.id, config: vm.config, state: vm.state ?? null } };
    },
    invalid: (v) => ({ ...v, config: { memory: { sizeMiB: 1 } } }),
    verify: async (r, fx, p) => expectStatus(fx, p.vm as ShimVm, 'vm/recover', r.status, 'running'),
  },
  'vm/start': transition('vm/start', 'created', 'running'),
  'vm/stop': transition('vm/stop', 'running', 'stopped', {
    params: () => ({ graceMs: 2_000 }),
    invalid: (v) => ({ ...v, graceMs: -1 }),
  }),
  'vm/pause': transition('vm/pause', 'running', 'paused'),
  'vm/resume': transition('vm/resume', 'paused', 'running'),
  'vm/wait': {
    ...onVm<'vm/wait'>('running', { needs: ['vm/stop'] }),
    call: async (fx, p) => {
      const vm = p.vm as ShimVm;
      const ac = new AbortController();
      let settled = false;
      const waiting = vm.wait(undefined, { signal: AbortSignal.any([ac.signal, fx.signal]), timeoutMs: null });
      void waiting.then(
        () => (settled = true),
        () => (settled = true),
      );
      try {
        await sleep(200, fx.signal);
        expect(!settled, 'vm/wait answered while the VM was still running');
        await vm.stop({ graceMs: 2_000 }, fx.opts('vm/stop'));
        const limit = fx.run.options.exitDeadlineMs;
        const late = sleep(limit, fx.signal).then(() => fail(`vm/wait did not answer within ${limit} ms of the VM stopping`));
        return await Promise.race([waiting, late]);
      } finally {
        ac.abort();
      }
    },
    verify: (r) => expect(r.status === 'stopped', `vm/wait answered status ${r.status} for a VM that was stopped`),
  },
  'vm/save': onVm<'vm/save'>('paused', {
    params: (fx) => ({ path: fx.path('save.snap') }),
    invalid: relativePath,
    verify: async (r, _fx, p) => {
      expect(r.path === p.params.path, `vm/save answered path ${r.path}, asked for ${p.params.path}`);
      expect(existsSync(r.path), `vm/save wrote nothing at ${r.path}`);
      const size = (await stat(r.path)).size;
      expect(size === r.sizeBytes, `vm/save says ${r.sizeBytes} bytes, the file has ${size}`);
    },
  }),
  'vm/delete': onVm<'vm/delete'>('created', {
    verify: async (_r, fx, p) => {
      if (!fx.advertised('vm/info')) return;
      const vm = p.vm as ShimVm;
      await expectRejection(fx.raw('vm/info', { vmId: vm.id }), 'VmNotFound', 'vm/info of a deleted VM');
    },
  }),
  'vm/receiveMigration': {
    needs: [],
    offline: (fx) => ({ config: fx.config() }),
    prepare: async (fx) => ({ params: { config: fx.config() } }),
    invalid: (v) => ({ ...v, address: '' }),
    // Waiting for a stream that never comes: created, and nothing runs.
    verify: async (r, fx, p) => expectStatus(fx, p.vm as ShimVm, 'vm/receiveMigration', r.status, 'created'),
  },
  'vm/migrate': {
    needs: ['vm/create', 'vm/start', 'vm/receiveMigration'],
    offline: () => ({ uri: 'unix:/nonexistent/hvplug-conformance.sock' }),
    prepare: async (fx) => {
      // The plugin sends the VM to itself: a second VM of the same process is as good a destination as another host's.
      const vm = await fx.vmIn('running');
      const vmId = fx.newVmId();
      fx.track(vmId);
      const { vm: incoming, answer } = await fx.hv.bringUpWith('vm/receiveMigration', { vmId, config: fx.config() }, fx.opts('vm/receiveMigration'));
      migrations.set(vm.id, incoming);
      return { vm, params: { uri: answer.uri, ...(answer.tls === true ? { tls: true } : {}) } };
    },
    invalid: (v) => ({ ...v, uri: 'http://example.com/' }),
    verify: async (_r, fx, p) => {
      const source = p.vm as ShimVm;
      const incoming = migrations.get(source.id);
      migrations.delete(source.id);
      if (!incoming) fail('suite error: no incoming VM prepared');
      if (fx.advertised('vm/info')) {
        await expectRejection(fx.raw('vm/info', { vmId: source.id }), 'VmNotFound', 'vm/info of a VM migrated away');
        const limit = fx.run.options.exitDeadlineMs;
        const running = await within(limit, async () => ((await fx.raw('vm/info', { vmId: incoming.id })) as { status?: string }).status === 'running', fx.signal);
        expect(running, `the destination VM is not running within ${limit} ms of vm/migrate's answer`);
      }
    },
  },
  'vm/check': onVm<'vm/check'>('running', {
    verify: (r) => expect(r.ok, `vm/check of a running VM answered not ok: ${r.detail}`),
  }),
  'vm/disconnect': onVm<'vm/disconnect'>('running', {
    verify: async (_r, fx, p) => {
      for (const pid of fx.run.janitor.pidsOf((p.vm as ShimVm).id)) expect(isAlive(pid), `the VM's process ${pid} is gone after vm/disconnect`);
    },
  }),
  'vm/info': onVm<'vm/info'>('created', {
    verify: (r, _fx, p) => {
      const vm = p.vm as ShimVm;
      expect(r.vmId === vm.id, `vm/info answered vmId ${r.vmId} for ${vm.id}`);
      expect(r.status === 'created', `vm/info reports a created VM as ${r.status}`);
      expect(r.vcpus === vm.config.vcpus.boot, `vm/info reports ${r.vcpus} vCPUs, the config has ${vm.config.vcpus.boot}`);
      expect(r.memoryMiB === vm.config.memory.sizeMiB, `vm/info reports ${r.memoryMiB} MiB, the config has ${vm.config.memory.sizeMiB}`);
    },
  }),
  'vm/config': onVm<'vm/config'>('created', {
    verify: (r, _fx, p) => {
      const sent = (p.vm as ShimVm).config;
      expect(r.config.vcpus.boot === sent.vcpus.boot, `vm/config has ${r.config.vcpus.boot} vCPUs, the VM was created with ${sent.vcpus.boot}`);
      expect(r.config.memory.sizeMiB === sent.memory.sizeMiB, `vm/config has ${r.config.memory.sizeMiB} MiB, the VM was created with ${sent.memory.sizeMiB}`);
      expect(r.config.name === sent.name, `vm/config has name ${String(r.config.name)}, the VM was created as ${String(sent.name)}`);
    },
  }),
  'device/add': {
    needs: ['vm/create'],
    offline: () => ({ device: { type: 'rng', id: 'rng0' } }),
    prepare: async (fx) => {
      const cold = pluggable(fx, 'coldplug');
      const type = cold ?? pluggable(fx, 'hotplug');
      if (!type) throw new SkipCheck('the capabilities list no device type that can be plugged');
      if (!cold && !fx.advertised('vm/start')) throw new SkipCheck('devices can only be hot-plugged, and vm/start is not advertised');
      const vm = await fx.vmIn(cold ? 'created' : 'running');
      return { vm, params: { device: await fx.device(type, 'dev0') } };
    },
    invalid: (v) => ({ ...v, device: { type: 'floppy', id: 'fd0' } }),
    verify: async (r, fx, p) => {
      expect(r.deviceId === p.params.device.id, `device/add answered deviceId ${r.deviceId} for device ${p.params.device.id}`);
      await expectDeviceListed(fx, p.vm as ShimVm, r.deviceId, true, 'after device/add');
    },
  },
  'device/remove': {
    needs: ['vm/create'],
    offline: () => ({ deviceId: 'dev0' }),
    prepare: async (fx) => {
      const cold = pluggable(fx, 'coldplug');
      if (cold) {
        const device = await fx.device(cold, 'dev0');
        return { vm: await fx.vmIn('created', { devices: [device] }), params: { deviceId: device.id } };
      }
      const hot = DEVICE_TYPES.find((t) => fx.caps.devices[t]?.hotplug && fx.caps.devices[t]?.hotunplug);
      if (!hot || !fx.advertised('device/add') || !fx.advertised('vm/start')) {
        throw new SkipCheck('no device type can be cold-plugged, or hot-plugged and hot-unplugged');
      }
      const vm = await fx.vmIn('running');
      await vm.addDevice({ device: await fx.device(hot, 'dev0') }, fx.opts('device/add'));
      return { vm, params: { deviceId: 'dev0' } };
    },
    invalid: (v) => ({ ...v, deviceId: '' }),
    verify: async (_r, fx, p) => expectDeviceListed(fx, p.vm as ShimVm, p.params.deviceId, false, 'after device/remove'),
  },
  'vm/resizeVcpus': onVm<'vm/resizeVcpus'>('running', {
    params: () => ({ count: 2 }),
    invalid: (v) => ({ ...v, count: 0 }),
    verify: (r) => expect(r.vcpus === 2, `vm/resizeVcpus to 2 answered ${r.vcpus}`),
  }),
  'vm/resizeMemory': onVm<'vm/resizeMemory'>('running', {
    params: () => ({ sizeMiB: 256 }),
    invalid: (v) => ({ ...v, sizeMiB: 1 }),
    verify: (r) => expect(r.memoryMiB === 256, `vm/resizeMemory to 256 MiB answered ${r.memoryMiB}`),
  }),
  'vm/console': onVm<'vm/console'>('running', {
    verify: (r, fx) => {
      expect(fx.caps.consoleKinds.includes(r.kind), `vm/console answered a ${r.kind} console, which capabilities.consoleKinds does not list`);
      expect(r.path.length > 0, 'vm/console answered an empty path');
    },
  }),
  'vm/agentSocket': onVm<'vm/agentSocket'>('running', {
    verify: (r) => {
      if (r.kind === 'vsock') expect(r.cid !== undefined && r.port !== undefined, 'a vsock agent socket needs cid and port');
      else expect(!!r.path, 'a unix agent socket needs a path');
    },
  }),
  'vm/pids': onVm<'vm/pids'>('running', {
    verify: (r) => {
      expect(r.pids.length > 0, 'vm/pids of a running VM is empty');
      for (const pid of r.pids) expect(isAlive(pid), `vm/pids lists ${pid}, which is not a running process`);
    },
  }),
  'vm/threads': onVm<'vm/threads'>('running', {
    verify: (r, _fx, p) => {
      const boot = (p.vm as ShimVm).config.vcpus.boot;
      expect(r.vcpus.length === boot, `vm/threads lists ${r.vcpus.length} vCPU threads for a VM with ${boot} vCPUs`);
      expect(new Set(r.vcpus.map((v) => v.cpu)).size === r.vcpus.length, 'vm/threads lists a vCPU twice');
      for (const { tid } of r.vcpus) expect(isAlive(tid), `vm/threads lists thread ${tid}, which does not exist`);
    },
  }),
  'vm/stats': onVm<'vm/stats'>('running'),
  'image/ensure': {
    needs: [],
    offline: (fx) => ({ path: fx.path('absent.img'), format: 'raw', sizeBytes: MiB }),
    prepare: async (fx) => {
      const path = fx.path('ensured.img');
      fx.defer(`image ${path}`, () => rm(path, { force: true }));
      return { params: { path, format: 'raw', sizeBytes: MiB } };
    },
    invalid: relativePath,
    verify: async (r, _fx, p) => {
      expect(r.created, 'image/ensure of a missing image answered created: false');
      expect(existsSync(p.params.path), `image/ensure created nothing at ${p.params.path}`);
      const size = (await stat(p.params.path)).size;
      expect(size === MiB && r.sizeBytes === MiB, `image/ensure of ${MiB} bytes made a file of ${size} and answered ${r.sizeBytes}`);
    },
  },
  'image/create': {
    needs: [],
    offline: (fx) => ({ path: fx.path('absent-create.img'), format: 'raw', sizeBytes: MiB }),
    prepare: async (fx) => {
      const path = fx.path('created.img');
      fx.defer(`image ${path}`, () => rm(path, { force: true }));
      return { params: { path, format: 'raw', sizeBytes: MiB } };
    },
    invalid: relativePath,
    verify: (r, _fx, p) => {
      expect(r.path === p.params.path, `image/create answered path ${r.path}, asked for ${p.params.path}`);
      expect(existsSync(r.path), `image/create created nothing at ${r.path}`);
    },
  },
  'image/delete': {
    needs: [],
    offline: (fx) => ({ path: fx.path('absent-delete.img') }),
    prepare: async (fx) => ({ params: { path: await fx.imageFile('doomed.img', MiB) } }),
    invalid: relativePath,
    verify: (_r, _fx, p) => expect(!existsSync(p.params.path), `image/delete left ${p.params.path} in place`),
  },
};

/** A method's case, widened for code that walks every method alike. */
export function caseOf(method: GatedMethod): MethodCase<GatedMethod> {
  return METHOD_CASES[method] as unknown as MethodCase<GatedMethod>;
}
