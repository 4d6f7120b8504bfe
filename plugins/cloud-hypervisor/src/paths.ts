// Where a VM's files live: one directory per VM under the runtime directory the host hands the plugin,
// so a later plugin process (same runtime directory) finds them again.
import { join, relative } from 'node:path';

export interface VmPaths {
  readonly dir: string;
  /** --api-socket path= */
  readonly socket: string;
  /** --event-monitor path=: a file, so the events survive a plugin restart and can be re-read from an offset. */
  readonly events: string;
  /** The VMM's stdout and stderr. */
  readonly log: string;
  /** The guest's serial port (CH serial mode File). */
  readonly console: string;
  /** The unix socket of the agent vsock the plugin adds when the config has no vsock device. */
  readonly agentVsock: string;
  /** The unix socket of a user vsock device that names none. */
  readonly userVsock: string;
  /** The plugin's own record of the VM, for vm/recover without a state blob and vm/delete after a restart. */
  readonly stateFile: string;
  /** Where vm/restore unpacks a snapshot for vm.restore to read. */
  readonly restoreDir: string;
  /** Where an incoming live migration's VMM listens (vm.receive-migration, unix:). */
  readonly migrateSocket: string;
}

/** Linux limits sun_path to 108 bytes, NUL included. */
const MAX_SOCKET_PATH = 107;

export function vmPaths(runtimeDir: string, vmId: string): VmPaths {
  return pathsIn(join(runtimeDir, vmId));
}

/** The files of a VM whose directory is `dir` (a recovered VM keeps the directory its state names). */
export function pathsIn(dir: string): VmPaths {
  return {
    dir,
    socket: join(dir, 'api.sock'),
    events: join(dir, 'events.json'),
    log: join(dir, 'vmm.log'),
    console: join(dir, 'console.log'),
    agentVsock: join(dir, 'agent.vsock'),
    userVsock: join(dir, 'vsock.sock'),
    stateFile: join(dir, 'hvplug-state.json'),
    restoreDir: join(dir, 'restore'),
    migrateSocket: join(dir, 'migrate.sock'),
  };
}

/**
 * A file of the VM's directory as the VM's CH config names it: relative, since the VMM runs in that directory
 * (its cwd). A live migration carries the config to a VMM in another directory (or on another machine); the
 * serial log and the vsock sockets it names are then that VMM's own, not the source's (whose agent socket is
 * still bound while the destination sets up its devices).
 */
export function inVmDir(paths: VmPaths, file: string): string {
  return relative(paths.dir, file);
}

/** Why the VM's sockets cannot live in this directory, if they cannot. */
export function socketPathProblem(paths: VmPaths): string | undefined {
  const longest = Math.max(...[paths.socket, paths.agentVsock, paths.userVsock, paths.migrateSocket].map((p) => Buffer.byteLength(p)));
  if (longest <= MAX_SOCKET_PATH) return undefined;
  return `the VM's unix sockets under ${paths.dir} would be ${longest} bytes long, over the ${MAX_SOCKET_PATH}-byte limit of a unix socket path: use a shorter runtime directory or VM id`;
}

/**
 * `path=` for --api-socket and --event-monitor. Cloud Hypervisor's option_parser (option_parser/src/lib.rs,
 * split_commas) splits at commas outside double quotes and brackets and drops the quotes, so a quoted path
 * keeps its commas; see optionPathProblem for what no quoting can carry.
 */
export function optionPathValue(path: string): string {
  return `path="${path}"`;
}

/**
 * Why option_parser cannot be given this path, if it cannot: a double quote always toggles quoting (there is
 * no escape), brackets count even inside quotes (an unbalanced one is a syntax error), and values are trimmed.
 */
export function optionPathProblem(path: string): string | undefined {
  if (path.includes('"')) return `${path} holds a double quote ("), which Cloud Hypervisor's option syntax cannot carry`;
  let depth = 0;
  for (const c of path) {
    if (c === '[') depth++;
    else if (c === ']' && --depth < 0) break;
  }
  if (depth !== 0) return `${path} holds an unbalanced [ or ], which Cloud Hypervisor's option syntax cannot carry`;
  if (path !== path.trim()) return `${path} begins or ends with white space, which Cloud Hypervisor's option syntax trims`;
  return undefined;
}

/** Why the VMM cannot be told where this VM's API socket and event file are, if it cannot. */
export function vmmArgsProblem(paths: VmPaths): string | undefined {
  const problem = optionPathProblem(paths.socket) ?? optionPathProblem(paths.events);
  return problem && `${problem}: use another runtime directory`;
}
