import { servePlugin } from 'hvplug/plugin-sdk';
import { qemuPlugin } from './plugin.js';

// A function: what the plugin offers depends on the host it starts on (/dev/vhost-vsock), not the one that
// built its snapshot.
servePlugin(() => qemuPlugin());
