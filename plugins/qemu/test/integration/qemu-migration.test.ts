// Live migration of a real QEMU guest (TCG) between two hosts on this machine, each with its own state directory and
// its own QEMU plugin process: the guest's console counter continues at the destination without a reboot, the
// source QEMU is gone, and exactly one record exists afterwards, on the destination.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PluginHost } from 'hvplug';
import { VmConfig, type Progress } from 'hvplug/protocol';
import { GUEST_READY_MARKER } from '../../src/initramfs.js';
import { SKIP_MESSAGE, TEST_CACHE_DIR, findQemu } from '../../test-support/guest.js';
import { alive, eventually, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../../../../test/helpers.js';

const qemu = findQemu();
if (!qemu) console.warn(`skipping QEMU migration tests: ${SKIP_MESSAGE}`);

const COUNTER = 'n=0; while true; do n=$((n+1)); echo "TICK:$n"; sleep 0.2; done';
const ticks = (text: string): number[] => [...text.matchAll(/TICK:(\d+)\r?\n/g)].map((m) => Number(m[1]));
const read = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

const hosts: PluginHost[] = [];
const pids = new Set<number>();

// Network namespaces need root and iproute2 (CI runs as root).
const IP = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip'].find((p) => existsSync(p));
const NETNS_SKIP = process.getuid?.() !== 0 ? 'not root' : IP === undefined ? 'no ip (iproute2)' : undefined;
const NET = { a: '10.254.77.1', b: '10.254.77.2' };

/** A host whose plugin runs in network namespace `netns` (through `ip netns exec`), or in this one. */
function newHost(dir: string, name: string, netns?: string): PluginHost {
  const plugin =
    netns === undefined
      ? { name: 'qemu', command: pluginExecutable('qemu') }
      : { name: 'qemu', command: IP as string, args: ['netns', 'exec', netns, pluginExecutable('qemu')] };
  const host = new PluginHost({
    stateDir: join(dir, name, 'state'),
    runtimeDir: join(dir, name, 'run'),
    logger: memoryLogger().logger,
    plugins: [plugin],
    supervision: { healthIntervalMs: 0 },
  });
  hosts.push(host);
  return host;
}

describe.skipIf(!qemu)('QEMU live migration between two hosts (TCG)', () => {
  afterEach(async () => {
    for (const h of hosts.splice(0)) {
      for (const vm of (await h.hypervisor('qemu').catch(() => undefined))?.listVms() ?? []) await vm.delete().catch(() => undefined);
      await h.close();
    }
    for (const pid of pids) {
      if (alive(pid)) process.kill(-pid, 'SIGKILL');
      expect(alive(pid), `QEMU ${pid} left running`).toBe(false);
    }
    pids.clear();
    await removeTempDirs();
  }, 60_000);

  /** Boots a ticking guest on `src`, migrates it to `dst` and checks everything the migration promises. */
  async function migrateTicker(src: PluginHost, dst: PluginHost, address?: string): Promise<void> {
    const hv = await src.hypervisor('qemu');
    const vm = await hv.createVm({
      config: { name: 'ticker', vcpus: { boot: 1 }, memory: { sizeMiB: 128 }, plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR, guestScript: COUNTER } },
    });
    await vm.start();
    const srcInfo = await vm.info();
    const srcPid = srcInfo.pid as number;
    pids.add(srcPid);
    const srcConsole = (await vm.console()).path;
    await eventually(() => ticks(read(srcConsole)).length >= 3, 90_000, 'three ticks on the source console');

    // The source console goes with the source VM: what it said last is watched while the migration runs.
    let seen = '';
    let migrating = true;
    const watching = (async () => {
      while (migrating) {
        const now = read(srcConsole);
        if (now.length > 0) seen = now;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const progress: Progress[] = [];
    const report = await src.migrate(vm.id, dst, { address, onProgress: (p) => progress.push(p) }).finally(() => (migrating = false));
    await watching;

    expect(report.uri).toMatch(address === undefined ? /^unix:\// : new RegExp(`^tcp:${address.replace(/\./g, '\\.')}:\\d+$`));
    expect(report.transferredBytes).toBeGreaterThan(0);
    expect(report.downtimeMs).toBeGreaterThanOrEqual(0);
    expect(progress.at(-1)?.value.percentage).toBe(100);
    // Exactly one record, on the destination, owning the VM.
    expect((await src.records()).records).toEqual([]);
    const records = (await dst.records()).records;
    expect(records.map((r) => [r.vmId, r.status, r.migration, r.config.name])).toEqual([[vm.id, 'running', undefined, 'ticker']]);
    // The source QEMU is gone; another runs the guest.
    await eventually(() => !alive(srcPid), 10_000, 'the source QEMU ends');
    const moved = (await dst.vm(vm.id))!;
    const info = await moved.info();
    expect(info.status).toBe('running');
    pids.add(info.pid as number);
    expect(info.pid).not.toBe(srcPid);
    // The counter continues: the destination's first whole line follows the source's last, and the guest did not boot again.
    const last = Math.max(...ticks(seen));
    const dstConsole = (await moved.console()).path;
    await eventually(() => ticks(read(dstConsole)).length >= 3, 60_000, 'three ticks on the destination console');
    const after = ticks(read(dstConsole));
    expect(after[0]).toBeGreaterThan(last);
    expect(after[0]).toBeLessThanOrEqual(last + 2);
    expect(after).toEqual(after.map((_, i) => (after[0] as number) + i));
    expect(read(dstConsole)).not.toContain(GUEST_READY_MARKER);
    await moved.delete();
  }

  it('an incoming VM that is deleted before any stream came ends its QEMU (a failed migration leaves no orphan)', async () => {
    const dir = await tempDir();
    const dst = newHost(dir, 'b');
    const config = { name: 'incoming', vcpus: { boot: 1 }, memory: { sizeMiB: 128 }, plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR } };
    const uri = await dst.prepareIncoming('incoming-1', 'qemu', VmConfig.parse(config), 'a test', undefined);
    expect(uri).toMatch(/^unix:/);
    const pid = (await dst.records()).records[0]?.state as { pid?: number } | undefined;
    const qemuPid = pid?.pid as number;
    expect(qemuPid).toBeTypeOf('number');
    pids.add(qemuPid);
    expect(alive(qemuPid)).toBe(true);
    await dst.abortIncoming('incoming-1');
    await eventually(() => !alive(qemuPid), 10_000, `the incoming QEMU ${qemuPid} to end with its VM`);
    expect((await dst.records()).records).toEqual([]);
  }, 120_000);

  it('moves a running guest: its counter continues at the destination, the source QEMU is gone, one record remains', async () => {
    const dir = await tempDir('hvplug-qemu-mig-');
    await migrateTicker(newHost(dir, 'a'), newHost(dir, 'b'));
  }, 240_000);

  describe.skipIf(NETNS_SKIP !== undefined)('between two network namespaces', () => {
    const ns = { a: `hvmig-a-${process.pid}`, b: `hvmig-b-${process.pid}` };
    const ip = (...args: string[]): void => void execFileSync(IP as string, args, { stdio: 'pipe' });
    const cleanup = (): void => {
      for (const n of Object.values(ns)) {
        try {
          ip('netns', 'del', n);
        } catch {
          // Not there (never made, or already deleted).
        }
      }
    };

    afterEach(cleanup);

    it('moves the guest over TCP from a plugin in one namespace to a plugin in the other', async () => {
      cleanup();
      ip('netns', 'add', ns.a);
      ip('netns', 'add', ns.b);
      const veth = `hvm${process.pid % 100000}`;
      ip('link', 'add', `${veth}a`, 'type', 'veth', 'peer', 'name', `${veth}b`);
      ip('link', 'set', `${veth}a`, 'netns', ns.a);
      ip('link', 'set', `${veth}b`, 'netns', ns.b);
      for (const side of ['a', 'b'] as const) {
        ip('-n', ns[side], 'addr', 'add', `${NET[side]}/24`, 'dev', `${veth}${side}`);
        ip('-n', ns[side], 'link', 'set', `${veth}${side}`, 'up');
        ip('-n', ns[side], 'link', 'set', 'lo', 'up');
      }
      const dir = await tempDir('hvplug-qemu-mig-ns-');
      const src = newHost(dir, 'a', ns.a);
      const dst = newHost(dir, 'b', ns.b);
      // Each plugin really is in its namespace: its process's net namespace is the one named.
      const netnsOf = async (h: PluginHost): Promise<string> => execFileSync('readlink', [`/proc/${(await h.client('qemu'))?.pid}/ns/net`], { encoding: 'utf8' }).trim();
      await src.hypervisor('qemu');
      await dst.hypervisor('qemu');
      const [na, nb, mine] = [await netnsOf(src), await netnsOf(dst), execFileSync('readlink', ['/proc/self/ns/net'], { encoding: 'utf8' }).trim()];
      expect(new Set([na, nb, mine]).size).toBe(3);
      await migrateTicker(src, dst, NET.b);
    }, 240_000);
  });
});
