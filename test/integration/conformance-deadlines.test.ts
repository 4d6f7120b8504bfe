// Where the suite's call deadlines come from, through the built CLI as a user runs it: the method table
// (device/remove: 30 s) unless --call-timeout overrides it; and a hot-unplug that times out is reported as
// the guest's part of it, not as a bare TimeoutError.
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLI, ensureCliBuilt, fixture } from '../helpers.js';

beforeAll(ensureCliBuilt, 120_000);

/** A guest that acknowledges a hot-unplug after 11 s. */
const SLOW_UNPLUG = fixture('slow-unplug');

function conformance(args: readonly string[]): Promise<{ exitCode?: number; all: string }> {
  return execa('node', [CLI, 'conformance', ...args], { reject: false, all: true, timeout: 60_000, env: { HVPLUG_CONFIG: '', NO_COLOR: '1' } });
}

describe('hvplug conformance call deadlines', () => {
  it('with no options, device/remove has its own 30 s from the method table: an unplug acknowledged after 11 s passes', async () => {
    const r = await conformance(['--only', 'device.rng.hotunplug', '--', SLOW_UNPLUG]);
    expect(r.all).toMatch(/^✓ device\.rng\.hotunplug \d+ ms$/m);
    expect(r.exitCode, r.all).toBe(0);
  }, 60_000);

  it('--call-timeout overrides it, and the timeout says the guest did not acknowledge the unplug', async () => {
    const r = await conformance(['--call-timeout', '2', '--only', 'device.rng.hotunplug', '--', SLOW_UNPLUG]);
    expect(r.all).toContain(
      '✗ device.rng.hotunplug: device/remove of a rng device timed out: the guest did not acknowledge the unplug within 2 s; is it booted with ACPI hotplug?',
    );
    expect(r.all).not.toMatch(/TimeoutError/);
    expect(r.exitCode).toBe(1);
  }, 60_000);
});
