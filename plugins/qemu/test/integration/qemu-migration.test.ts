// Live migration of a real QEMU guest (TCG) between two hosts on this machine, each with its own state directory and
// its own QEMU plugin process: the guest's console counter continues at the destination without a reboot, the
// source QEMU is gone, and exactly one record exists afterwards, on the destination.
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { PluginHost } from 'hvplug';
import { VmConfig } from 'hvplug/protocol';
import { SKIP_MESSAGE, TEST_CACHE_DIR, findQemu } from '../../test-support/guest.js';
import { MigrationLab, NET, NETNS_SKIP, namespacePair } from './migration-lab.js';
import { alive, eventually, removeTempDirs, tempDir } from '../../../../test/helpers.js';

const qemu = findQemu();
if (!qemu) console.warn(`skipping QEMU migration tests: ${SKIP_MESSAGE}`);

const lab = new MigrationLab();

describe.skipIf(!qemu)('QEMU live migration between two hosts (TCG)', () => {
  afterEach(async () => {
    await lab.cleanup();
    await removeTempDirs();
  }, 60_000);

  it('an incoming VM that is deleted before any stream came ends its QEMU (a failed migration leaves no orphan)', async () => {
    const dir = await tempDir();
    const dst = lab.newHost(dir, 'b');
    const config = { name: 'incoming', vcpus: { boot: 1 }, memory: { sizeMiB: 128 }, plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR } };
    const { uri, tls } = await dst.prepareIncoming('incoming-1', 'qemu', VmConfig.parse(config), 'a test', undefined);
    expect(uri).toMatch(/^unix:/);
    expect(tls).toBe(false);
    const pid = (await dst.records()).records[0]?.state as { pid?: number } | undefined;
    const qemuPid = pid?.pid as number;
    expect(qemuPid).toBeTypeOf('number');
    lab.pids.add(qemuPid);
    expect(alive(qemuPid)).toBe(true);
    await dst.abortIncoming('incoming-1');
    await eventually(() => !alive(qemuPid), 10_000, `the incoming QEMU ${qemuPid} to end with its VM`);
    expect((await dst.records()).records).toEqual([]);
  }, 120_000);

  it('moves a running guest: its counter continues at the destination, the source QEMU is gone, one record remains', async () => {
    const dir = await tempDir('hvplug-qemu-mig-');
    const report = await lab.migrateTicker(lab.newHost(dir, 'a'), lab.newHost(dir, 'b'));
    expect(report.tls).toBe(false);
  }, 240_000);

  describe.skipIf(NETNS_SKIP !== undefined)('between two network namespaces', () => {
    const net = namespacePair('hvmig');

    afterEach(net.remove);

    it('moves the guest over TCP from a plugin in one namespace to a plugin in the other', async () => {
      net.create();
      const dir = await tempDir('hvplug-qemu-mig-ns-');
      const src = lab.newHost(dir, 'a', { netns: net.ns.a });
      const dst = lab.newHost(dir, 'b', { netns: net.ns.b });
      // Each plugin really is in its namespace: its process's net namespace is the one named.
      const netnsOf = async (h: PluginHost): Promise<string> => execFileSync('readlink', [`/proc/${(await h.client('qemu'))?.pid}/ns/net`], { encoding: 'utf8' }).trim();
      await src.hypervisor('qemu');
      await dst.hypervisor('qemu');
      const [na, nb, mine] = [await netnsOf(src), await netnsOf(dst), execFileSync('readlink', ['/proc/self/ns/net'], { encoding: 'utf8' }).trim()];
      expect(new Set([na, nb, mine]).size).toBe(3);
      const report = await lab.migrateTicker(src, dst, NET.b);
      expect(report.tls).toBe(false);
    }, 240_000);
  });
});
