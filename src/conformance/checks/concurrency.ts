import type { ShimVm } from 'hvplug';
import { expect, sleep, type CheckDef } from '../check.js';
import { reportedStatus } from '../vm-report.js';

const COUNT = 3;

export const concurrencyCheck: CheckDef = {
  id: 'concurrency.vms',
  title: `${COUNT} VMs created and started at once do not interfere`,
  verifies: 'One plugin process serves many VMs: concurrent calls, per-VM state, events and vm/wait kept apart.',
  needs: ['vm/create', 'vm/start', 'vm/stop'],
  run: async (fx) => {
    const vms = await Promise.all(Array.from({ length: COUNT }, (_, i) => fx.createVm({ name: `concurrent-${i}` })));
    expect(new Set(vms.map((v) => v.id)).size === COUNT, 'the VMs share an id');
    await Promise.all(vms.map((vm) => vm.start(undefined, fx.opts('vm/start'))));
    const [first, victim, last] = vms as [ShimVm, ShimVm, ShimVm];
    if (fx.advertised('vm/info')) {
      const infos = await Promise.all(vms.map((vm) => vm.info(undefined, fx.opts('vm/info'))));
      infos.forEach((info, i) => expect(info.vmId === vms[i]?.id, `vm/info of ${vms[i]?.id} answered for ${info.vmId}`));
      const pids = infos.map((i) => i.pid).filter((p): p is number => p !== undefined);
      expect(new Set(pids).size === pids.length, `two VMs report the same VMM pid (${pids.join(', ')})`);
    }
    // Stopping one VM must end no other VM's wait.
    const ac = new AbortController();
    let ended = false;
    const waiting = fx.advertised('vm/wait') ? first.wait(undefined, { signal: AbortSignal.any([ac.signal, fx.signal]), timeoutMs: null }) : undefined;
    void waiting?.then(
      () => (ended = true),
      () => undefined,
    );
    await victim.stop({ graceMs: 2_000 }, fx.opts('vm/stop'));
    await sleep(300, fx.signal);
    expect(!ended, `stopping ${victim.id} ended vm/wait of ${first.id}`);
    ac.abort();
    for (const vm of [first, last]) {
      const s = (await reportedStatus(fx, vm)) ?? vm.status;
      expect(s === 'running', `stopping ${victim.id} left ${vm.id} ${s}`);
    }
    expect(((await reportedStatus(fx, victim)) ?? victim.status) === 'stopped', `${victim.id} is not stopped after vm/stop`);
  },
};
