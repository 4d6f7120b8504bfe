import type { FlagTable } from './flags.js';

/** Accepted before the command, and after it unless the command has a flag of the same name. */
export const GLOBAL_FLAGS = {
  config: { type: 'string', value: '<file.toml>', help: 'plugins config file (TOML, [plugins.<name>] tables); default $HVPLUG_CONFIG, else hvplug/plugins.toml in $XDG_CONFIG_HOME (~/.config), else in /etc' },
  'plugin-dir': { type: 'string', multiple: true, value: '<dir>', help: 'also look for hvplug-plugin-<name> executables here (repeatable)' },
  'state-dir': { type: 'string', value: '<dir>', help: 'VM records and plugin state; default $HVPLUG_STATE_DIR, else $XDG_STATE_HOME/hvplug' },
  'runtime-dir': { type: 'string', value: '<dir>', help: 'sockets, pidfiles and consoles; default $HVPLUG_RUNTIME_DIR, else $XDG_RUNTIME_DIR/hvplug' },
  'log-level': { type: 'string', value: '<level>', help: 'stderr log level: trace, debug, info, warn (default), error, fatal, silent' },
  'unreachable-lost-after': {
    type: 'string',
    value: '<seconds>',
    help: "how long a plugin connected to (connect = \"tls://...\" or \"unix:...\") may be out of reach before its VMs are reported lost; 0 never (default 300); a plugin's own unreachableLostAfterMs in the config wins; with a daemon running, the daemon's setting applies",
  },
  help: { type: 'boolean', short: 'h', help: 'show help' },
  version: { type: 'boolean', short: 'V', help: 'print the hvplug version' },
} as const satisfies FlagTable;
