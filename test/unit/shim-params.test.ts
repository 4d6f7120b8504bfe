import { describe, expect, it } from 'vitest';
import { InitializeResult, PROTOCOL_VERSIONS, VmConfig } from 'hvplug/protocol';
import { ShimHypervisor, type PluginChannel } from 'hvplug';

/** A channel that answers every call with the VM's status and keeps the params the shim sent. */
function recordingChannel(sent: unknown[]): PluginChannel {
  return {
    info: InitializeResult.parse({
      protocolVersion: PROTOCOL_VERSIONS[PROTOCOL_VERSIONS.length - 1],
      plugin: { name: 'params-test', version: '1.0.0', vendor: 'hvplug tests' },
      capabilities: { methods: ['vm/stop', 'vm/pause'] },
    }),
    call: (_method, params) => {
      sent.push(params);
      return Promise.resolve({ status: 'stopped' });
    },
    onNotification: () => () => undefined,
  };
}

describe("the shim's params of a VM's call", () => {
  it("takes a caller's own __proto__ member as a member, never as the params' prototype", async () => {
    const sent: unknown[] = [];
    const shim = new ShimHypervisor(recordingChannel(sent));
    const vm = shim.adopt('vm-1', VmConfig.parse({}), 'running');
    // As JSON.parse makes it: an own member named __proto__, whose force would be inherited by a plain object.
    await vm.stop(JSON.parse('{"__proto__": {"force": true, "graceMs": 1}}') as Record<string, never>);
    expect(sent).toEqual([{ vmId: 'vm-1', force: false, graceMs: 10_000 }]);
  });
});
