import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import * as z from 'zod';
import type { ShimVm } from '../core/index.js';
import { openDaemonConsole, RemoteHost, type DaemonConsole } from '../daemon/index.js';
import { nonEmpty } from './args.js';
import { defineCommand } from './command.js';
import { FileTail, unreadableLog } from './console-tail.js';
import type { CliContext } from './context.js';
import { CliFailure, EXIT_OK } from './errors.js';
import { safeLine } from './safe-text.js';
import { attachRef } from './vm-ref.js';
import { errorText } from './vm-util.js';

/** Ctrl-], the byte telnet and virsh console leave on: a guest shell has no use for it. */
export const DETACH_BYTE = 0x1d;

/** Signals that end a session; in raw mode Ctrl-C is the guest's, so only SIGINT from elsewhere arrives. */
const ENDING_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

type Console = { kind: 'log' | 'socket' | 'pty'; path: string };
/** A socket console reached through the daemon: joined to a connection of the daemon's socket. */
type Joined = Extract<DaemonConsole, { kind: 'socket' }> & { daemonPid: number };
export type SessionEnd = 'detached' | 'closed' | 'input-ended' | 'signal';

const say = (text: string): void => void process.stderr.write(`${safeLine(text)}\n`);

/**
 * Where the VM's console is, asked of its plugin; the host is closed before the session, which needs only the VMM.
 * With a daemon, the console comes through the daemon's socket (which may be all this user can reach), and the
 * daemon's plugin watches the VM meanwhile: a guest that powers off ends the session.
 */
async function consoleOf(ctx: CliContext, ref: string): Promise<{ vm: ShimVm; console: Console | Joined }> {
  const host = await ctx.vmHost();
  try {
    const { vm } = await attachRef(host, ref);
    if (vm.ownedBy !== undefined) throw new CliFailure(`VM ${vm.id} is driven by ${vm.ownedBy}: its console is that host's`);
    if (!vm.hypervisor.capabilities.methods.includes('vm/console')) throw new CliFailure(`the plugin of VM ${vm.id} offers no console (vm/console)`);
    if (vm.config.console === 'none') throw new CliFailure(`VM ${vm.id} was created without a console (console "none")`);
    if (vm.config.console !== 'log' && vm.status !== 'running' && vm.status !== 'paused') {
      throw new CliFailure(`VM ${vm.id} is ${vm.status}: its console is there only while it runs (hvplug start ${ref})`);
    }
    if (host instanceof RemoteHost) {
      const c = await openDaemonConsole(host.client.daemon, vm.id);
      return { vm, console: c.kind === 'socket' ? { ...c, daemonPid: host.client.daemon.pid } : c };
    }
    return { vm, console: await vm.console({}) };
  } finally {
    await host.close();
  }
}

function connect(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

/**
 * The terminal and the console socket joined both ways until Ctrl-], the end of input, a signal or the VMM
 * closing the socket. The guest's bytes reach the terminal as they are: the guest drives it, as a terminal
 * emulator expects. No buffer of our own: the guest's output waits in the socket while the terminal is slow.
 */
export function joinConsole(socket: Socket, input: NodeJS.ReadStream, output: NodeJS.WriteStream): Promise<SessionEnd> {
  return new Promise((resolve) => {
    const raw = input.isTTY === true;
    let over = false;
    const finish = (why: SessionEnd): void => {
      if (over) return;
      over = true;
      input.off('data', onInput);
      input.off('end', onInputEnd);
      for (const s of ENDING_SIGNALS) process.off(s, onSignal);
      if (raw) input.setRawMode(false);
      input.pause();
      // What was typed before Ctrl-] still reaches the guest; the VMM then sees its client leave.
      socket.end();
      resolve(why);
    };
    const onInput = (chunk: Buffer): void => {
      const at = chunk.indexOf(DETACH_BYTE);
      if (at < 0) {
        socket.write(chunk);
        return;
      }
      if (at > 0) socket.write(chunk.subarray(0, at));
      finish('detached');
    };
    const onInputEnd = (): void => finish('input-ended');
    const onSignal = (): void => finish('signal');
    socket.on('data', (chunk: Buffer) => {
      if (output.write(chunk)) return;
      socket.pause();
      output.once('drain', () => socket.resume());
    });
    // One handed over by the daemon's console call was paused after its answer; a listener alone does not resume it.
    socket.resume();
    // An error is followed by close, which ends the session.
    socket.on('error', () => undefined);
    socket.on('close', () => finish('closed'));
    for (const s of ENDING_SIGNALS) process.on(s, onSignal);
    if (raw) input.setRawMode(true);
    input.on('data', onInput);
    input.on('end', onInputEnd);
    input.resume();
  });
}

async function interactive(vm: ShimVm, ref: string, c: Console | Joined): Promise<number> {
  let socket: Socket;
  if ('socket' in c) {
    socket = c.socket;
    say(`hvplug: attached to the console of VM ${vm.id} through the hvplug daemon (pid ${c.daemonPid}); Ctrl-] detaches, the VM keeps running`);
    if (c.first.length > 0) process.stdout.write(c.first);
  } else {
    try {
      socket = await connect(c.path);
    } catch (err) {
      throw new CliFailure(`cannot connect to the console of VM ${vm.id} (${c.path}): ${errorText(err)}`);
    }
    say(`hvplug: attached to the console of VM ${vm.id}; Ctrl-] detaches, the VM keeps running`);
  }
  const end = await joinConsole(socket, process.stdin, process.stdout);
  // Own line: the guest's output usually leaves the cursor after a prompt.
  process.stderr.write('\n');
  if (end === 'closed') say(`hvplug: the console of VM ${vm.id} closed: its VMM ended it (the VM stopped, or was deleted)`);
  else say(`hvplug: detached from the console of VM ${vm.id}${end === 'detached' ? '' : ` (${end === 'signal' ? 'signal' : 'end of input'})`}; it keeps running (hvplug console ${ref} attaches again)`);
  return EXIT_OK;
}

/** The log from its first line, then as it grows, until a signal: there is nothing to type into. */
async function followLog(ctx: CliContext, vm: ShimVm, path: string): Promise<number> {
  // A log that is there and cannot be read would be a warning every poll, until Ctrl-C: said once, before following.
  await access(path, constants.R_OK).catch((err: unknown) => {
    const refused = unreadableLog(path, err);
    if (refused) throw refused;
  });
  say(`hvplug: the plugin offers no interactive console for VM ${vm.id}: following its log ${path} read-only (Ctrl-C leaves)`);
  const tail = new FileTail(path, (line) => void process.stdout.write(`${line}\n`), {
    onError: (err) => ctx.logger.warn({ vmId: vm.id, path, err: err.message }, 'cannot read the console log'),
  });
  await new Promise<void>((resolve) => {
    const onSignal = (): void => {
      for (const s of ENDING_SIGNALS) process.off(s, onSignal);
      resolve();
    };
    for (const s of ENDING_SIGNALS) process.on(s, onSignal);
  });
  await tail.stop();
  return EXIT_OK;
}

export const consoleCommand = defineCommand({
  name: 'console',
  summary: "attach to a VM's console (Ctrl-] detaches); a plugin's log console is followed read-only",
  description:
    'Joins the terminal to the guest console when the plugin serves it on a unix socket (the qemu plugin with ' +
    '"console": "socket" in the VM config): what is typed goes to the guest, what the guest writes comes to the terminal ' +
    'as it is, and Ctrl-] detaches, leaving the VM running. QEMU serves one client at a time: a second waits until the first leaves. ' +
    'The command also ends when the guest console closes (the VM stopped) or its input ends. With the daemon running, the ' +
    "console comes through the daemon's socket, and a guest that powers off ends the session; without it, nothing watches " +
    'the VM while it is attached, and a powered-off guest leaves the session open until Ctrl-]. A console the plugin ' +
    'offers only as a log file is printed and followed read-only until Ctrl-C.',
  flags: {},
  positionals: [{ name: 'vm', required: true, help: 'the VM: its id, its name, or an id prefix of at least 4 characters' }],
  options: z.object({ vm: nonEmpty('a VM id, name or id prefix') }),
  async action(opts, ctx) {
    const { vm, console: c } = await consoleOf(ctx, opts.vm);
    if (c.kind === 'socket') return interactive(vm, opts.vm, c);
    if (c.kind === 'log') return followLog(ctx, vm, c.path);
    throw new CliFailure(`the console of VM ${vm.id} is the pty ${c.path}: attach to it with a terminal program (screen ${c.path})`);
  },
});
