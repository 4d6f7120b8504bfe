// The double's command line: the real binary's VMM options, a clear refusal of VM options, and the
// socket handling of the real one (umask 077, refusing a live socket, replacing a stale one).
import { execFile, spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CloudHypervisorClient } from '../../src/api-client.js';
import { bundleDouble, removeDoubleBundle } from '../../test-support/double-bundle.js';
import { startVmm, type VmmProcess, type VmmTarget } from '../../test-support/vmm-process.js';
import { removeTempDirs, tempDir } from '../../../../test/helpers.js';

const run = promisify(execFile);
let bundle: string;
let target: VmmTarget;
const running: VmmProcess[] = [];

beforeAll(async () => {
  bundle = await bundleDouble();
  target = { kind: 'double', argv: [process.execPath, bundle], reason: 'command-line tests of the double' };
}, 60_000);
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop()));
  await removeTempDirs();
});
afterAll(removeDoubleBundle);

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [bundle, ...args], { env: { ...process.env, ...env }, timeout: 10_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

describe('cloud-hypervisor contract double command line', () => {
  it('prints its version like the real binary, marked as the double', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await cli([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^cloud-hypervisor v\d+\.\d+\S* \(contract double\)\n$/);
    }
  });

  it('refuses VM options clearly, and unknown options, with the usage exit code 2', async () => {
    for (const args of [['--kernel', '/k'], ['--disk=path=/d'], ['--cpus', 'boot=2']]) {
      const r = await cli(['--api-socket', '/tmp/x.sock', ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('is a VM option, which the cloud-hypervisor contract double does not take');
      expect(r.stderr).toContain('vm.create');
    }
    const unknown = await cli(['--api-socket', '/tmp/x.sock', '--frobnicate']);
    expect(unknown).toMatchObject({ code: 2, stderr: expect.stringContaining("unexpected argument '--frobnicate'") as unknown });
    expect((await cli([])).code).toBe(2);
    expect((await cli(['-v'])).stderr).toContain('needs --api-socket');
    expect((await cli(['--api-socket', '/tmp/x.sock', '--seccomp', 'maybe'])).code).toBe(2);
  });

  it('fails like the real binary on --event-monitor without path or fd, and on a bad status-code mode', async () => {
    const dir = await tempDir('ch-cli-');
    // option_parser takes only path= and fd= here: another key is its error (ParsingEventMonitor), no key at all is BareEventMonitor.
    const r = await cli(['--api-socket', join(dir, 's'), '--event-monitor', '']);
    expect(r).toMatchObject({ code: 1, stderr: expect.stringContaining('Error parsing --event-monitor: path or fd required') as unknown });
    const unknown = await cli(['--api-socket', join(dir, 's'), '--event-monitor', 'mode=x']);
    expect(unknown).toMatchObject({ code: 1, stderr: expect.stringContaining('Error parsing --event-monitor: unknown option: mode') as unknown });
    const bad = await cli(['--api-socket', join(dir, 's')], { CH_DOUBLE_STATUS_CODES: 'sometimes' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('CH_DOUBLE_STATUS_CODES');
  });

  it('takes --api-socket as a bare path or path=, creates it private (umask 077), and logs with -v to --log-file', async () => {
    const dir = await tempDir('ch-cli-');
    const log = join(dir, 'vmm.log');
    const a = await startVmm(target, { socketPath: join(dir, 'a.sock'), extraArgs: ['-vv', '--log-file', log, '--seccomp', 'false', '--landlock'] });
    running.push(a);
    await new CloudHypervisorClient({ socketPath: a.socketPath }).waitReady({ timeoutMs: 10_000 });
    expect(statSync(a.socketPath).mode & 0o077).toBe(0);
    expect(readFileSync(log, 'utf8')).toContain('API listening on');

    const bare = join(dir, 'b.sock');
    running.push(await startVmm(target, { socketPath: bare, bareSocketArg: true }));
    await new CloudHypervisorClient({ socketPath: bare }).waitReady({ timeoutMs: 10_000 });
  });

  it('refuses a socket a live VMM answers on, and replaces a stale socket file', async () => {
    const dir = await tempDir('ch-cli-');
    const socketPath = join(dir, 'api.sock');
    const first = await startVmm(target, { socketPath });
    running.push(first);
    await new CloudHypervisorClient({ socketPath }).waitReady({ timeoutMs: 10_000 });
    const second = await cli(['--api-socket', `path=${socketPath}`]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('in use by another cloud-hypervisor instance');
    expect((await new CloudHypervisorClient({ socketPath }).ping()).pid).toBe(first.child.pid);

    const stale = join(dir, 'stale.sock');
    await writeFile(stale, 'left behind by a crash');
    const third = await startVmm(target, { socketPath: stale });
    running.push(third);
    expect((await new CloudHypervisorClient({ socketPath: stale }).waitReady({ timeoutMs: 10_000 })).pid).toBe(third.child.pid);
  });

  it('serves on an inherited listening socket with --api-socket fd=<n>, leaving the path to its owner', async () => {
    const dir = await tempDir('ch-cli-');
    const socketPath = join(dir, 'inherited.sock');
    const bound = join(dir, 'bound.sock');
    const server = createServer();
    await new Promise<void>((r) => server.listen(bound, r));
    // libuv keeps the listening descriptor on the handle; node has no public accessor for it.
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    const child = spawn(process.execPath, [bundle, '--api-socket', 'fd=3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    // Closing our copy unlinks the path it was bound to; the renamed path still reaches the socket.
    await rename(bound, socketPath);
    server.close();
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const client = new CloudHypervisorClient({ socketPath });
      expect((await client.waitReady({ timeoutMs: 10_000 })).pid).toBe(child.pid);
      await client.shutdownVmm();
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    // The socket belongs to whoever passed it: the double does not remove it.
    expect(statSync(socketPath).isSocket()).toBe(true);
  });
});
