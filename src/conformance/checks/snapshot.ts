import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { ShimVm } from 'hvplug';
import { expect, fail, SkipCheck, within, type CheckDef } from '../check.js';
import type { Fixture } from '../fixture.js';
import { isAlive } from '../processes.js';

/** A running VM whose plugin process has since shut down, as after a plugin crash or upgrade. */
async function orphan(fx: Fixture): Promise<{ vm: ShimVm; pids: number[] }> {
  const earlier = await fx.connect('aux');
  const vm = await fx.vmIn('running', {}, earlier);
  const pids = await fx.vmPids(vm);
  await fx.run.session.disconnect(earlier);
  return { vm, pids };
}

const saveRestore: CheckDef = {
  id: 'snapshot.save-restore',
  title: 'a paused VM saved to a file comes back paused from it, with its config, and resumes',
  verifies: 'vm/save and vm/restore: the snapshot is written where asked, sized as answered, and restores the same VM.',
  needs: ['vm/create', 'vm/start', 'vm/pause', 'vm/save', 'vm/restore', 'vm/resume'],
  run: async (fx) => {
    const source = await fx.vmIn('paused', { vcpus: { boot: 2, max: 4 } });
    const path = fx.path('snapshot.bin');
    const saved = await source.save({ path }, fx.opts('vm/save'));
    expect(existsSync(path), `vm/save wrote nothing at ${path}`);
    expect((await stat(path)).size === saved.sizeBytes, 'the snapshot file size differs from what vm/save answered');
    const vmId = fx.newVmId();
    fx.track(vmId);
    const restored = await fx.hv.restoreVm({ vmId, config: source.config, path }, fx.opts('vm/restore'));
    expect(restored.status === 'paused', `vm/restore answered status ${restored.status}, expected paused`);
    if (fx.advertised('vm/info')) {
      const info = await restored.info(undefined, fx.opts('vm/info'));
      expect(info.vcpus === 2, `the restored VM has ${info.vcpus} vCPUs, the saved one had 2`);
    }
    const resumed = await restored.resume(undefined, fx.opts('vm/resume'));
    expect(resumed.status === 'running', `the restored VM answered status ${resumed.status} to vm/resume`);
  },
};

const reattach: CheckDef = {
  id: 'recover.reattach',
  title: 'a new plugin process re-attaches to a running VM from its state and controls it',
  verifies: 'vm/recover: VMs outlive their plugin process; the opaque state is enough to take them back.',
  needs: ['vm/create', 'vm/start', 'vm/recover'],
  run: async (fx) => {
    const { vm, pids } = await orphan(fx);
    for (const pid of pids) expect(isAlive(pid), `the VM's process ${pid} died with its plugin process`);
    const back = await fx.hv.recoverVm({ vmId: vm.id, config: vm.config, state: vm.state ?? null }, fx.opts('vm/recover'));
    fx.track(back.id);
    expect(back.status === 'running', `vm/recover answered status ${back.status} for a VM that runs`);
    const now = await fx.vmPids(back);
    expect(pids.every((p) => now.includes(p)), `after vm/recover the VM's processes are ${now.join(', ')}, before they were ${pids.join(', ')}`);
    if (fx.advertised('vm/stop')) {
      const r = await back.stop({ graceMs: 2_000 }, fx.opts('vm/stop'));
      expect(r.status === 'stopped', `the recovered VM answered status ${r.status} to vm/stop`);
    }
  },
};

const vmmGone: CheckDef = {
  id: 'recover.vmm-gone',
  title: 'vm/recover of a VM whose VMM died meanwhile answers status lost',
  verifies: 'vm/recover: "status lost if the VMM is gone", rather than an error or a VM that pretends to run.',
  needs: ['vm/create', 'vm/start', 'vm/recover'],
  run: async (fx) => {
    const { vm, pids } = await orphan(fx);
    if (!pids.length) throw new SkipCheck('the plugin reports no process for a running VM (neither vm/pids nor vm/info gives one)');
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    if (!(await within(2_000, () => pids.every((p) => !isAlive(p)), fx.signal))) fail(`the VM's processes ${pids.join(', ')} survived SIGKILL`);
    const back = await fx.hv.recoverVm({ vmId: vm.id, config: vm.config, state: vm.state ?? null }, fx.opts('vm/recover'));
    fx.track(back.id);
    expect(back.status === 'lost', `vm/recover answered status ${back.status} for a VM whose VMM is gone`);
  },
};

export function snapshotChecks(): CheckDef[] {
  return [saveRestore, reattach, vmmGone];
}
