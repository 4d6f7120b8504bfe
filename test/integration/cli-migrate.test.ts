import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, eventually, removeTempDirs, tempDir, CLI, ensureCliBuilt } from '../helpers.js';

/** `hvplug migrate <vm> <destination>` through the built CLI, each command its own process. */
let dir: string;
const guests = new Set<number>();

async function cli(stateDir: string, args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa('node', [CLI, '--state-dir', stateDir, '--runtime-dir', join(stateDir, 'run'), ...args], {
    reject: false,
    timeout: 60_000,
    env: { HVPLUG_CONFIG: '' },
  });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  await ensureCliBuilt();
  dir = await tempDir('hvplug-cli-mig-');
}, 120_000);

afterAll(async () => {
  for (const pid of guests) {
    if (alive(pid)) process.kill(-pid, 'SIGKILL');
  }
  await removeTempDirs();
});

describe('hvplug migrate', () => {
  it('moves a running VM to another state directory: one record there, none here, the guest counting on', async () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    const created = await cli(a, ['create', '--plugin', 'example-proprietary', '--name', 'mover']);
    expect(created.exitCode, created.stderr).toBe(0);
    expect((await cli(a, ['start', 'mover'])).exitCode).toBe(0);
    const before = JSON.parse((await cli(a, ['ps', '--json'])).stdout) as { id: string; pid: number }[];
    const srcPid = before[0]!.pid;
    guests.add(srcPid);

    const moved = await cli(a, ['migrate', 'mover', b, '--json']);
    expect(moved.exitCode, moved.stderr).toBe(0);
    const report = JSON.parse(moved.stdout) as { vmId: string; uri: string; downtimeMs: number; transferredBytes: number };
    expect(report.vmId).toBe(before[0]!.id);
    expect(report.downtimeMs).toBeGreaterThanOrEqual(0);

    expect(JSON.parse((await cli(a, ['ps', '--json'])).stdout)).toEqual([]);
    const after = JSON.parse((await cli(b, ['ps', '--json'])).stdout) as { id: string; status: string; pid: number; name: string }[];
    expect(after.map((r) => [r.id, r.status, r.name])).toEqual([[report.vmId, 'running', 'mover']]);
    guests.add(after[0]!.pid);
    await eventually(() => !alive(srcPid), 5_000, 'the source guest ends');
    // Its console is the destination's now, and counts on.
    const info = JSON.parse((await cli(b, ['info', 'mover', '--json'])).stdout) as { console?: { path?: string } };
    const path = info.console?.path;
    if (path) await eventually(async () => /tick \d+/.test(await readFile(path, 'utf8')), 5_000, 'ticks at the destination');
    expect((await cli(b, ['stop', 'mover'])).exitCode).toBe(0);

    // A VM that is not there, and a destination that is the source, are refused.
    expect((await cli(a, ['migrate', 'nope', b])).exitCode).toBe(1);
    await cli(a, ['create', '--plugin', 'example-proprietary', '--name', 'stay']);
    const self = await cli(a, ['migrate', 'stay', a]);
    expect(self.exitCode).toBe(1);
    expect(self.stderr).toMatch(/own state directory/);
    await cli(a, ['rm', 'stay']);
  }, 120_000);
});
