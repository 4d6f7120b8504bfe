// The shim's side of the call-overhead figures: a minimal SDK plugin whose handlers do nothing, so what is
// measured is hvplug itself (shim, host, SDK, framing), not a VMM.
import { servePlugin } from 'hvplug/plugin-sdk';

const vms = new Set<string>();

servePlugin({
  info: { name: 'noop', version: '1.0.0', vendor: 'hvplug bench' },
  capabilities: {},
  handlers: {
    'vm/create': ({ vmId }) => {
      vms.add(vmId);
      return { status: 'created' };
    },
    'vm/check': () => ({ ok: true, detail: 'noop' }),
    'vm/delete': ({ vmId }) => {
      vms.delete(vmId);
      return {};
    },
  },
});
