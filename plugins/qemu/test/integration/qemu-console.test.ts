// The interactive console of the QEMU plugin: console "socket" puts the guest's serial port on a unix socket in the
// VM's runtime directory, logged too, and a client types into the guest's shell and reads its answer, before and
// after the plugin is SIGKILLed and restarted.
import { readFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PluginHost } from 'hvplug';
import { SKIP_MESSAGE, TEST_CACHE_DIR, findQemu } from '../../test-support/guest.js';
import { alive, eventually, memoryLogger, pluginExecutable, removeTempDirs, tempDir } from '../../../../test/helpers.js';

const qemu = findQemu();
if (!qemu) console.warn(`skipping the QEMU console test: ${SKIP_MESSAGE}`);
const pids = new Set<number>();

afterAll(async () => {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await removeTempDirs();
});

const logText = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

/** A client of the console socket that keeps what the guest sent. */
async function attach(path: string): Promise<{ socket: Socket; received: () => string }> {
  const socket = createConnection(path);
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => text };
}

/** Types `command` into the guest's shell and waits for `answer` alone on a line (the echoed command line does not count). */
async function ask(path: string, command: string, answer: string): Promise<void> {
  const client = await attach(path);
  try {
    const line = new RegExp(`(^|\\n)${answer}\\r?\\n`);
    // The guest's tty keeps what arrives before the shell reads, so there is nothing to wait for first.
    client.socket.write(`${command}\n`);
    await eventually(() => line.test(client.received()), 60_000, `${answer} from the guest shell`).catch((e: Error) => {
      throw new Error(`${e.message}; received: ${JSON.stringify(client.received().slice(-600))}`);
    });
  } finally {
    client.socket.destroy();
  }
}

describe.skipIf(!qemu)('QEMU console on a unix socket (TCG)', () => {
  it('types into the guest shell and reads its answer, logged too; again after the plugin is SIGKILLed', async () => {
    const dir = await tempDir('hvplug-qemu-console-');
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      logger: memoryLogger().logger,
      plugins: [{ name: 'qemu', command: pluginExecutable('qemu') }],
      supervision: { backoffMs: 50, healthIntervalMs: 0 },
    });
    try {
      const hv = await host.hypervisor('qemu');
      expect(hv.info.capabilities.consoleKinds).toEqual(['log', 'socket']);
      const vm = await hv.createVm({
        config: {
          memory: { sizeMiB: 256 },
          console: 'socket',
          plugin: { accel: 'tcg', initramfsCacheDir: TEST_CACHE_DIR, guestScript: 'echo CONSOLE-SHELL-UP\nexec sh' },
        },
      });
      await vm.start();
      const { pid, details } = await vm.info();
      if (pid) pids.add(pid);
      const consoleLog = String(details.consoleLog);
      const c = await vm.console();
      // In the VM's runtime directory, beside its log.
      expect(c).toEqual({ kind: 'socket', path: join(String(details.runDir), 'console.sock') });
      expect(details.consoleSocket).toBe(c.path);

      // Nobody is attached while the guest boots: its output still reaches the log, and the guest is not held up.
      await eventually(() => logText(consoleLog).includes('CONSOLE-SHELL-UP'), 150_000, 'the guest shell in the console log');
      await ask(c.path, 'echo $((6*7))', '42');
      expect(logText(consoleLog)).toMatch(/\n42\r?\n/);
      expect((await vm.info()).status).toBe('running');

      // The restarted plugin answers with the same socket, and the guest still answers on it.
      const victim = (await host.client('qemu'))!.pid!;
      const restarted = new Promise((r) => host.once('plugin-restarted', r));
      process.kill(victim, 'SIGKILL');
      await restarted;
      await eventually(async () => (await vm.check().catch(() => ({ ok: false }))).ok, 20_000, 'vm/check after re-attach');
      expect(await vm.console()).toEqual(c);
      await ask(c.path, 'echo $((5*9))', '45');
      expect(alive(pid!)).toBe(true);
      await vm.delete();
      expect(alive(pid!)).toBe(false);
    } finally {
      await host.close();
    }
  }, 300_000);
});
