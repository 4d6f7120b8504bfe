import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { FrameWriter } from 'hvplug/transport';
import { ProtocolError } from 'hvplug';
import { HostRpc } from '../../src/core/host-rpc.js';

/** HostRpc alone, fed what a plugin could send: it settles calls and reports, and never throws. */
function rpc(): { rpc: HostRpc; fatal: ProtocolError[] } {
  const fatal: ProtocolError[] = [];
  const out = new PassThrough();
  out.resume();
  const r = new HostRpc(new FrameWriter(out), { notification: () => undefined, fatal: (e) => fatal.push(e), note: () => undefined });
  return { rpc: r, fatal };
}

const deep = (n: number): unknown => JSON.parse(`${'['.repeat(n)}${']'.repeat(n)}`);

describe('HostRpc and deep input', () => {
  it('a non-message nested 100,000 deep is a fatal ProtocolError, not a throw', () => {
    const { rpc: r, fatal } = rpc();
    expect(() => r.receive(deep(100_000))).not.toThrow();
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toBeInstanceOf(ProtocolError);
  });

  it('an answer whose error is nested 100,000 deep fails that call with a ProtocolError', async () => {
    const { rpc: r } = rpc();
    const call = r.call('vm/info', {}, { timeoutMs: 1_000 });
    expect(() => r.receive({ jsonrpc: '2.0', id: 1, error: deep(100_000) })).not.toThrow();
    await expect(call).rejects.toBeInstanceOf(ProtocolError);
    expect(r.outstanding).toBe(0);
  });
});
