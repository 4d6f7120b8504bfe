// What the QEMU live-migration tests share: hosts whose plugin may run in a network namespace (and with flags of its
// own), a pair of namespaces joined by a veth, and a guest whose console counter shows it kept running. Beside the
// tests, not in test-support/: it drives the plugin through a host, as tests do, which plugin code may not.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { PluginHost, type MigrationReport, type ShimVm } from 'hvplug';
import type { Progress } from 'hvplug/protocol';
import { GUEST_READY_MARKER } from '../../src/initramfs.js';
import { TEST_CACHE_DIR } from '../../test-support/guest.js';
import { alive, eventually, memoryLogger, pluginExecutable } from '../../../../test/helpers.js';

/** The guest's script: a line a tick, numbered, so a reboot or a lost stretch shows in the numbers. */
export const COUNTER = 'n=0; while true; do n=$((n+1)); echo "TICK:$n"; sleep 0.2; done';
export const ticks = (text: string): number[] => [...text.matchAll(/TICK:(\d+)\r?\n/g)].map((m) => Number(m[1]));
export const readText = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};
export const tickerConfig = { name: 'ticker', vcpus: { boot: 1 }, memory: { sizeMiB: 128 }, plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR, guestScript: COUNTER } };

// Network namespaces need root and iproute2 (CI runs as root).
export const IP = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip'].find((p) => existsSync(p));
export const NETNS_SKIP = process.getuid?.() !== 0 ? 'not root' : IP === undefined ? 'no ip (iproute2)' : undefined;
/** The addresses of the two namespaces' ends of the veth. */
export const NET = { a: '10.254.77.1', b: '10.254.77.2' };

const ip = (...args: string[]): void => void execFileSync(IP as string, args, { stdio: 'pipe' });

/** Two network namespaces, `a` and `b`, joined by a veth with the NET addresses; `tag` keeps test files apart. */
export function namespacePair(tag: string): { ns: { a: string; b: string }; create(): void; remove(): void } {
  const ns = { a: `${tag}-a-${process.pid}`, b: `${tag}-b-${process.pid}` };
  const remove = (): void => {
    for (const n of Object.values(ns)) {
      try {
        ip('netns', 'del', n);
      } catch {
        // Not there (never made, or already deleted).
      }
    }
  };
  const create = (): void => {
    remove();
    ip('netns', 'add', ns.a);
    ip('netns', 'add', ns.b);
    // Deleting a namespace deletes its end of the veth, and the pair with it.
    const veth = `${tag.slice(0, 5)}${process.pid % 100000}`;
    ip('link', 'add', `${veth}a`, 'type', 'veth', 'peer', 'name', `${veth}b`);
    ip('link', 'set', `${veth}a`, 'netns', ns.a);
    ip('link', 'set', `${veth}b`, 'netns', ns.b);
    for (const side of ['a', 'b'] as const) {
      ip('-n', ns[side], 'addr', 'add', `${NET[side]}/24`, 'dev', `${veth}${side}`);
      ip('-n', ns[side], 'link', 'set', `${veth}${side}`, 'up');
      ip('-n', ns[side], 'link', 'set', 'lo', 'up');
    }
  };
  return { ns, create, remove };
}

/** The hosts a test made and the QEMUs it saw, all ended by `cleanup` (afterEach), which fails on a QEMU left running. */
export class MigrationLab {
  private readonly hosts: PluginHost[] = [];
  readonly pids = new Set<number>();

  /** A host whose plugin runs in network namespace `netns` (through `ip netns exec`), or in this one, given `args`. */
  newHost(dir: string, name: string, opts: { netns?: string; args?: readonly string[] } = {}): PluginHost {
    const args = opts.args ?? [];
    const plugin =
      opts.netns === undefined
        ? { name: 'qemu', command: pluginExecutable('qemu'), args: [...args] }
        : { name: 'qemu', command: IP as string, args: ['netns', 'exec', opts.netns, pluginExecutable('qemu'), ...args] };
    const host = new PluginHost({
      stateDir: join(dir, name, 'state'),
      runtimeDir: join(dir, name, 'run'),
      logger: memoryLogger().logger,
      plugins: [plugin],
      supervision: { healthIntervalMs: 0 },
    });
    this.hosts.push(host);
    return host;
  }

  async cleanup(): Promise<void> {
    for (const h of this.hosts.splice(0)) {
      for (const vm of (await h.hypervisor('qemu').catch(() => undefined))?.listVms() ?? []) await vm.delete().catch(() => undefined);
      await h.close();
    }
    for (const pid of this.pids) {
      if (alive(pid)) process.kill(-pid, 'SIGKILL');
      expect(alive(pid), `QEMU ${pid} left running`).toBe(false);
    }
    this.pids.clear();
  }

  /** A running guest on `host` whose counter has ticked `ticked` times (0: started, not waited for). */
  async ticker(host: PluginHost, ticked = 3): Promise<{ vm: ShimVm; pid: number; consoleLog: string }> {
    const vm = await (await host.hypervisor('qemu')).createVm({ config: tickerConfig });
    await vm.start();
    const pid = (await vm.info()).pid as number;
    this.pids.add(pid);
    const consoleLog = (await vm.console()).path;
    if (ticked > 0) await eventually(() => ticks(readText(consoleLog)).length >= ticked, 90_000, `${ticked} ticks on the source console`);
    return { vm, pid, consoleLog };
  }

  /** Boots a ticking guest on `src`, migrates it to `dst` and checks everything the migration promises. */
  async migrateTicker(src: PluginHost, dst: PluginHost, address?: string): Promise<MigrationReport> {
    const { vm, pid: srcPid, consoleLog: srcConsole } = await this.ticker(src);

    // The source console goes with the source VM: what it said last is watched while the migration runs.
    let seen = '';
    let migrating = true;
    const watching = (async () => {
      while (migrating) {
        const now = readText(srcConsole);
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
    this.pids.add(info.pid as number);
    expect(info.pid).not.toBe(srcPid);
    // The counter continues: the destination's first whole line follows the source's last, and the guest did not boot again.
    const last = Math.max(...ticks(seen));
    const dstConsole = (await moved.console()).path;
    await eventually(() => ticks(readText(dstConsole)).length >= 3, 60_000, 'three ticks on the destination console');
    const after = ticks(readText(dstConsole));
    expect(after[0]).toBeGreaterThan(last);
    expect(after[0]).toBeLessThanOrEqual(last + 2);
    expect(after).toEqual(after.map((_, i) => (after[0] as number) + i));
    expect(readText(dstConsole)).not.toContain(GUEST_READY_MARKER);
    await moved.delete();
    return report;
  }
}
