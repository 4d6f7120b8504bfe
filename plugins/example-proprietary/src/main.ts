import { VmConfig } from 'hvplug/protocol';
import { servePlugin } from 'hvplug/plugin-sdk';
import { examplePlugin } from './plugin.js';

// What a host does first after the handshake, rehearsed when the startup snapshot is built: a VM's creation (never
// started, so no guest), in a scratch directory that is then removed. Its config as a host sends one, every default
// filled in (the host validates it first), so that every part of the config's schema has parsed once.
servePlugin(examplePlugin(), {
  rehearsal: { definition: examplePlugin, calls: [{ method: 'vm/create', params: { vmId: 'rehearsal', config: VmConfig.parse({}) } }] },
});
