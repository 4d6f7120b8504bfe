import { fail, within, type CheckDef } from '../check.js';

export const leftoversCheck: CheckDef = {
  id: 'cleanup.no-leftovers',
  title: 'every VM the suite created was deleted, and its processes went with it',
  verifies: 'vm/delete releases everything the VM holds; a run leaves nothing behind.',
  late: true,
  run: async (fx) => {
    const { events, janitor, options } = fx.run;
    const problems = janitor.problems.map((p) => `[${p.check}] ${p.what}`);
    const survivors = new Map<number, { vmId: string; check: string }>();
    for (const d of events.deletions) {
      for (const pid of janitor.pidsOf(d.vmId)) if (janitor.processes.alive(pid)) survivors.set(pid, { vmId: d.vmId, check: d.check });
    }
    await within(options.exitDeadlineMs, () => [...survivors.keys()].every((p) => !janitor.processes.alive(p)), fx.signal);
    const killed = new Set(janitor.processes.killAll(survivors.keys()));
    for (const [pid, { vmId, check }] of survivors) {
      if (killed.has(pid)) problems.push(`[${check}] process ${pid} of VM ${vmId} still ran ${options.exitDeadlineMs} ms after vm/delete (killed)`);
    }
    if (problems.length) fail(problems.join('\n'));
  },
};
