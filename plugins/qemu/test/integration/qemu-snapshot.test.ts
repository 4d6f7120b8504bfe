// Save and restore on QEMU 7.2: `stop` + `migrate exec:cat > file`, then a new QEMU started with
// `-incoming defer` + `migrate-incoming exec:cat file`. The guest prints a counter; after the restore
// it goes on from the saved value instead of booting again.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CLI, ensureCliBuilt, removeTempDirs, tempDir } from '../../../../test/helpers.js';
import { type QemuJsonObject, rootPortId } from '../../src/cmdline.js';
import { GUEST_READY_MARKER } from '../../src/initramfs.js';
import type { QmpClient } from '../../src/qmp.js';
import { quitQemu } from '../../src/process.js';
import { migrateToFile, writeSidecar } from '../../src/snapshot.js';
import { SKIP_MESSAGE, bootTestGuest, findQemu, killAllStarted } from '../../test-support/guest.js';

const qemu = findQemu();
if (!qemu) console.warn(`skipping QEMU snapshot tests: ${SKIP_MESSAGE}`);

const TICKER = 'i=0; while [ $i -lt 100000 ]; do echo "TICK $i"; i=$((i+1)); sleep 0.2; done';

function ticks(text: string): number[] {
  return [...text.matchAll(/TICK (\d+)/g)].map((m) => Number(m[1]));
}

/** Polls query-migrate until the migration is over; returns its final status. */
async function migrationDone(qmp: QmpClient, timeoutMs: number): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const info = await qmp.execute('query-migrate');
    if (info.status === 'completed' || info.status === 'failed' || info.status === 'cancelled') return info.status;
    if (Date.now() > end) throw new Error(`migration still ${info.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(!qemu)('QEMU snapshot and restore (TCG)', () => {
  afterEach(killAllStarted);

  it('restores a stopped guest from a migration file and its counter continues', async () => {
    const src = await bootTestGuest({ script: TICKER });
    await src.waitConsole(/TICK 4\b/);
    await src.vm.qmp.execute('stop');
    // Let whatever the serial port was still writing land in the log before reading the last value.
    await new Promise((r) => setTimeout(r, 300));
    const { text: saved } = await src.waitConsole(/TICK/);
    const savedAt = Math.max(...ticks(saved));
    const stateFile = join(src.runDir, 'vm.state');
    await src.vm.qmp.execute('migrate', { uri: `exec:cat > ${stateFile}` });
    expect(await migrationDone(src.vm.qmp, 60_000)).toBe('completed');
    expect(statSync(stateFile).size).toBeGreaterThan(1024 * 1024);
    await quitQemu(src.vm);

    // Same runtime directory, initrd and console log: the restored QEMU appends to the log.
    const restoredFrom = await src.consoleOffset();
    const dst = await bootTestGuest({ script: TICKER, runDir: src.runDir, incoming: 'defer' });
    expect(await dst.vm.qmp.execute('query-status')).toMatchObject({ status: 'inmigrate' });
    await dst.vm.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
    const completed = dst.vm.qmp.waitForEvent('MIGRATION', { predicate: (e) => e.data.status === 'completed' || e.data.status === 'failed', timeoutMs: 60_000 });
    await dst.vm.qmp.execute('migrate-incoming', { uri: `exec:cat ${stateFile}` });
    expect((await completed).data.status).toBe('completed');
    // The source was stopped when saved, so the restored guest waits for cont.
    expect(await dst.vm.qmp.execute('query-status')).toMatchObject({ status: 'paused', running: false });
    await dst.vm.qmp.execute('cont');

    const { text } = await dst.waitConsole(new RegExp(`TICK ${savedAt + 3}\\b`), { from: restoredFrom, timeoutMs: 30_000 });
    const after = ticks(text);
    expect(after[0]).toBe(savedAt + 1);
    expect(text).not.toContain(GUEST_READY_MARKER);
    expect(existsSync(join(src.runDir, 'qmp.sock'))).toBe(true);
  }, 150_000);

  it('restores a guest with a hot-plugged disk when the disk is cold-plugged into the restoring QEMU', async () => {
    // Page cache dropped before each read, so the guest reads what is in the image now.
    const script = `i=0; while true; do
  echo 3 > /proc/sys/vm/drop_caches
  d=""; [ -b /dev/vda ] && d="$(head -c 15 /dev/vda)"
  echo "TICK $i DATA:[$d]"; i=$((i+1)); sleep 0.3
done`;
    const src = await bootTestGuest({ script });
    const image = join(src.runDir, 'disk.raw');
    execFileSync('qemu-img', ['create', '-q', '-f', 'raw', image, '4M']);
    writeFileSync(image, 'HVPLUG-BEFORE!!', { flag: 'r+' });
    const blockdev: QemuJsonObject = { driver: 'raw', 'node-name': 'disk1', file: { driver: 'file', filename: image } };
    const device: QemuJsonObject = { driver: 'virtio-blk-pci', id: 'vdisk1', drive: 'disk1', bus: rootPortId(0) };
    await src.waitConsole(/TICK 1\b/);
    await src.vm.qmp.execute('blockdev-add', blockdev);
    await src.vm.qmp.execute('device_add', device);
    await src.waitConsole(/DATA:\[HVPLUG-BEFORE!!\]/);

    await src.vm.qmp.execute('stop');
    const stateFile = join(src.runDir, 'vm.state');
    await src.vm.qmp.execute('migrate', { uri: `exec:cat > ${stateFile}` });
    expect(await migrationDone(src.vm.qmp, 60_000)).toBe('completed');
    await quitQemu(src.vm);

    const restoredFrom = await src.consoleOffset();
    const dst = await bootTestGuest({ script, runDir: src.runDir, incoming: 'defer', coldPlug: { blockdevs: [blockdev], devices: [device] } });
    await dst.vm.qmp.execute('migrate-incoming', { uri: `exec:cat ${stateFile}` });
    await waitForStatus(dst.vm.qmp, 'paused', 60_000);
    writeFileSync(image, 'HVPLUG-AFTER!!!', { flag: 'r+' });
    await dst.vm.qmp.execute('cont');
    const { text } = await dst.waitConsole(/DATA:\[HVPLUG-AFTER!!!\]/, { from: restoredFrom, timeoutMs: 30_000 });
    expect(text).not.toContain(GUEST_READY_MARKER);
    expect(text).not.toMatch(/TICK 0 /);
  }, 150_000);
});

describe.skipIf(!qemu)('QEMU snapshot files (TCG)', () => {
  afterEach(killAllStarted);

  it('vm/save writes guest RAM and its sidecar 0600 whatever the umask, also over an existing 0644 file', async () => {
    const src = await bootTestGuest({ script: TICKER });
    await src.waitConsole(/TICK 1\b/);
    await src.vm.qmp.execute('stop');
    const fresh = join(src.runDir, 'fresh.state');
    const reused = join(src.runDir, 'reused.state');
    writeFileSync(reused, 'an older snapshot');
    chmodSync(reused, 0o644);
    const umask = process.umask(0o022);
    try {
      for (const path of [fresh, reused]) {
        // QEMU refuses a second migration from the state the first one left it in: run, then stop again.
        if (path === reused) {
          await src.vm.qmp.execute('cont');
          await src.vm.qmp.execute('stop');
        }
        await migrateToFile(src.vm.qmp, path, new AbortController().signal);
        await writeSidecar(path, { launch: {} as never, attached: [], vcpus: 1, memoryMiB: 64 });
        expect(statSync(path).size).toBeGreaterThan(1024 * 1024);
        expect(statSync(path).mode & 0o777).toBe(0o600);
        expect(statSync(`${path}.qemu.json`).mode & 0o777).toBe(0o600);
      }
    } finally {
      process.umask(umask);
    }
  }, 150_000);
});

describe.skipIf(!qemu)('hvplug save and restore of a QEMU VM (TCG)', () => {
  afterAll(removeTempDirs);

  it("restores a VM saved through the CLI, its hot-plugged disk with it: the CLI's FILE.hvplug.json is not the plugin's sidecar", async () => {
    await ensureCliBuilt();
    const dir = await tempDir('hvplug-qemu-cli-save-');
    const env = { HVPLUG_CONFIG: '', HVPLUG_STATE_DIR: join(dir, 'state'), HVPLUG_RUNTIME_DIR: join(dir, 'run') };
    const hvplug = (...args: string[]) => execa('node', [CLI, ...args], { env, reject: false, timeout: 120_000, cwd: dir });
    const must = async (...args: string[]): Promise<string> => {
      const r = await hvplug(...args);
      expect(r.exitCode, `hvplug ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    const id = (await must('run', '--detach', '--plugin', 'qemu', '--name', 'web', '--memory', '128')).trim();
    try {
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'data.qcow2'), '16M']);
      writeFileSync(join(dir, 'disk.json'), JSON.stringify({ type: 'block', id: 'data0', path: join(dir, 'data.qcow2'), format: 'qcow2' }));
      expect((await must('attach-device', 'web', 'disk.json')).trim()).toBe('data0');
      await must('save', 'web', 'web.snap');
      expect(existsSync(join(dir, 'web.snap.hvplug.json'))).toBe(true);
      expect(existsSync(join(dir, 'web.snap.qemu.json'))).toBe(true);
      expect((await must('restore', 'web.snap')).trim()).toBe(id);
      const info = JSON.parse(await must('info', 'web', '--json')) as { status: string; devices: { id: string }[] };
      expect(info.status).toBe('running');
      expect(info.devices.map((d) => d.id)).toEqual(['data0']);
    } finally {
      await hvplug('stop', '--force', id);
    }
  }, 300_000);
});

async function waitForStatus(qmp: QmpClient, status: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await qmp.execute('query-status');
    if (s.status === status) return;
    if (Date.now() > end) throw new Error(`status still ${s.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
