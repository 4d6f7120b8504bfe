/**
 * node's builtins the plugin needs only once it runs a guest or a migration, loaded then rather than at its start: a
 * plugin process with no VM holds neither (node:child_process and node:net with what they load, ~0.5 MiB of each
 * process's RSS). Not `import()`: a startup snapshot has no dynamic import. The snapshot's CommonJS script has node's
 * `require` (builtins only), the ES module bundle the one its banner makes; unbundled (tests), getBuiltinModule (Node
 * >= 20.16). Not node:module's createRequire: node:module loads node's ES module loader with it, ~0.2 MiB of RSS.
 */
const load: (id: string) => unknown = typeof require === 'function' ? require : (id) => process.getBuiltinModule(id);

export const childProcess = (): typeof import('node:child_process') => load('node:child_process') as typeof import('node:child_process');
export const net = (): typeof import('node:net') => load('node:net') as typeof import('node:net');
