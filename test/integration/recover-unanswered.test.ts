import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileStateStore, PluginHost } from 'hvplug';
import { fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

/**
 * A vm/recover that is never answered says nothing of the VM: the plugin may be stuck, or its peer gone silent on the
 * network, while the VMM runs on. Its deadline is no verdict, so the VM is kept as recorded (ReattachReport.unanswered),
 * never written lost, which a record would keep for good.
 */
const PLUGIN = { name: 'deaf-recover', command: fixture('deaf-recover') };
const hosts: PluginHost[] = [];

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
  await removeTempDirs();
});

function newHost(dir: string): PluginHost {
  const host = new PluginHost({
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    logger: memoryLogger().logger,
    plugins: [PLUGIN],
    supervision: { healthIntervalMs: 0 },
  });
  hosts.push(host);
  return host;
}

describe('a re-attach whose vm/recover is never answered', () => {
  it('keeps the VM as recorded and reports it unanswered once the deadline passes, never lost', async () => {
    const dir = await tempDir();
    const first = newHost(dir);
    const vm = await (await first.hypervisor(PLUGIN.name)).createVm({ vmId: 'quiet', config: {} });
    await vm.start();
    await first.close();

    const host = newHost(dir);
    const lost: string[] = [];
    host.on('vm-lost', (e) => lost.push(e.vmId));
    const report = await host.reattach();
    expect({ lost: report.lost, recovered: report.recovered, unanswered: report.unanswered }).toEqual({
      lost: [],
      recovered: [],
      unanswered: [{ vmId: 'quiet', reason: expect.stringMatching(/vm\/recover timed out/) }],
    });
    expect(lost).toEqual([]);
    const [record] = (await new FileStateStore(join(dir, 'state')).list()).records;
    expect(record?.status).toBe('running');
    expect((await host.vm('quiet'))?.status).toBe('running');
  }, 60_000);
});
