import { servePlugin } from 'hvplug/plugin-sdk';
import { MIGRATION_TLS_FLAG, migrationTlsDir } from './migration-tls.js';
import { qemuPlugin } from './plugin.js';

// A function: what the plugin offers depends on the host it starts on (/dev/vhost-vsock), not the one that
// built its snapshot, and so do its flags.
servePlugin((flags) => qemuPlugin({ migrationTlsDir: migrationTlsDir(flags[MIGRATION_TLS_FLAG]) }), { flags: [MIGRATION_TLS_FLAG] });
