import type { Command } from './command.js';

/**
 * A command as main.ts knows it before it runs: its name and summary (all that `hvplug help` shows), and how to
 * load it. Each command's module, with what it imports (the host, the protocol's schemas, zod), is loaded only when
 * that command runs or its help is asked for: a command pays for its own code only. The summary is the command's
 * own (test/cli-footprint.test.ts holds them equal).
 */
export interface CommandEntry {
  readonly name: string;
  readonly summary: string;
  load(): Promise<Command>;
}

// One entry a line, in the order `hvplug help` lists them.
export const COMMANDS: readonly CommandEntry[] = [
  { name: 'run', summary: 'boot a VM through a plugin, show its events and console, stop it cleanly', load: async () => (await import('./run.js')).runCommand },
  { name: 'create', summary: 'create a VM without booting it; prints its id (boot it with start)', load: async () => (await import('./lifecycle.js')).createCommand },
  { name: 'start', summary: 'boot a created or stopped VM; prints its id', load: async () => (await import('./lifecycle.js')).startCommand },
  { name: 'stop', summary: 'stop a VM from the state directory and delete it (unless --keep)', load: async () => (await import('./vms.js')).stopCommand },
  { name: 'kill', summary: 'power a VM off at once, without asking the guest; the VM stays (start it again or rm it)', load: async () => (await import('./lifecycle.js')).killCommand },
  { name: 'rm', summary: 'delete a VM and its record (refuses a running VM unless --force)', load: async () => (await import('./lifecycle.js')).rmCommand },
  { name: 'pause', summary: 'pause a running VM from the state directory', load: async () => (await import('./vms.js')).pauseCommand },
  { name: 'resume', summary: 'resume a paused VM from the state directory', load: async () => (await import('./vms.js')).resumeCommand },
  { name: 'save', summary: 'save a running VM to a file and end it (as virsh save); restore brings it back', load: async () => (await import('./vm-snapshot.js')).saveCommand },
  { name: 'restore', summary: 'bring a VM saved by save back, running, under its name and id (as virsh restore)', load: async () => (await import('./vm-snapshot.js')).restoreCommand },
  { name: 'migrate', summary: "live-migrate a running VM to another host's state directory (its plugin may run on another machine)", load: async () => (await import('./migrate.js')).migrateCommand },
  { name: 'attach-device', summary: 'attach a device (JSON) to a VM: cold before boot, hot while it runs; prints the device id', load: async () => (await import('./vm-devices.js')).attachDeviceCommand },
  { name: 'detach-device', summary: 'detach a device from a VM by its id (hot-unplug while it runs)', load: async () => (await import('./vm-devices.js')).detachDeviceCommand },
  { name: 'resize', summary: "set a VM's online vCPUs (--vcpus) and/or memory (--memory)", load: async () => (await import('./vm-devices.js')).resizeCommand },
  { name: 'info', summary: 'show a VM: status, plugin, pid, size, devices, console, owner', load: async () => (await import('./vm-info.js')).infoCommand },
  { name: 'stats', summary: "show a VM's resource use now: CPU time, memory, uptime, the plugin's counters", load: async () => (await import('./vm-info.js')).statsCommand },
  { name: 'logs', summary: "print a VM's console output (-f to follow it)", load: async () => (await import('./logs.js')).logsCommand },
  { name: 'events', summary: 'stream VM events (created, running, paused, exited, lost, device-added, deleted...) as they happen', load: async () => (await import('./events.js')).eventsCommand },
  { name: 'console', summary: "attach to a VM's console (Ctrl-] detaches); a plugin's log console is followed read-only", load: async () => (await import('./console.js')).consoleCommand },
  { name: 'ps', summary: 'list the VMs in the state directory with their live status', load: async () => (await import('./vms.js')).psCommand },
  { name: 'plugins', summary: 'list the plugins hvplug can find', load: async () => (await import('./plugins.js')).pluginsCommand },
  { name: 'inspect', summary: 'start a plugin and print its handshake and capabilities', load: async () => (await import('./inspect.js')).inspectCommand },
  { name: 'spec', summary: 'print the protocol as an OpenRPC document', load: async () => (await import('./spec.js')).specCommand },
  { name: 'conformance', summary: 'run the conformance suite against a plugin (--plugin <name>, -- <command> or --connect <address>)', load: async () => (await import('./conformance.js')).conformanceCommand },
  { name: 'daemon', summary: 'run the host of the state directory in the foreground; the other commands then go through it', load: async () => (await import('./daemon.js')).daemonCommand },
  // Completion describes every command: it loads them all, when it runs.
  { name: 'completion', summary: 'print a shell completion script (bash, zsh or fish)', load: async () => (await import('./completion.js')).completionCommand(allCommands) },
  // So does the manual page.
  { name: 'man', summary: 'print the hvplug(1) manual page (roff), generated from the commands: hvplug man | man -l -', load: async () => (await import('./man.js')).manCommand(allCommands) },
];

/** Every command of the table, loaded. */
export function allCommands(): Promise<Command[]> {
  return Promise.all(COMMANDS.map((c) => c.load()));
}
