import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import * as z from 'zod';
import { flagSet, intValue, nonEmpty } from './args.js';
import { defineCommand } from './command.js';
import { FileTail, LineSplitter, unreadableLog } from './console-tail.js';
import { CliFailure, EXIT_OK } from './errors.js';
import { Output } from './output.js';
import { safeLine } from './safe-text.js';
import { attachRef } from './vm-ref.js';
import { firstSignal } from './signals.js';

/** Read back from the end a chunk at a time: --tail of any N holds one chunk, never the file. */
const CHUNK_BYTES = 64 * 1024;
/** --tail's largest N: a typo of a few more digits is caught rather than scanned for. */
const MAX_TAIL_LINES = 1_000_000;

/**
 * The byte range of the log to print: to its size now (what later lines a running guest adds are for -f), from where its
 * last `lines` lines start (0 when it has fewer). Empty when the log does not exist yet.
 */
export async function logRange(path: string, lines: number | undefined): Promise<{ from: number; to: number }> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { from: 0, to: 0 };
    throw unreadableLog(path, err) ?? err;
  }
  try {
    const { size } = await fh.stat();
    const range = (from: number): { from: number; to: number } => ({ from, to: size });
    if (lines === undefined) return range(0);
    if (lines === 0) return range(size);
    const buf = Buffer.alloc(CHUNK_BYTES);
    let end = size;
    let wanted = lines;
    while (end > 0) {
      const start = Math.max(0, end - CHUNK_BYTES);
      const { bytesRead } = await fh.read(buf, 0, end - start, start);
      for (let i = bytesRead - 1; i >= 0; i--) {
        // The log's final newline ends its last line rather than starting another.
        if (buf[i] !== 0x0a || start + i === size - 1) continue;
        if (--wanted === 0) return range(start + i + 1);
      }
      end = start;
    }
    return range(0);
  } finally {
    await fh.close();
  }
}

/** Lines of the byte range [from, to) of a file, the last one even without its newline. */
async function printRange(path: string, from: number, to: number, onLine: (line: string) => void): Promise<void> {
  if (to <= from) return;
  const lines = new LineSplitter(onLine);
  for await (const chunk of createReadStream(path, { start: from, end: to - 1, highWaterMark: CHUNK_BYTES })) lines.push(chunk as Buffer);
  lines.end();
}

export const logsCommand = defineCommand({
  name: 'logs',
  summary: "print a VM's console output (-f to follow it)",
  description:
    "Prints the console output of a VM from the state directory, from the log file its plugin writes (vm/console of kind " +
    'log): the whole log, or its last lines with --tail. With -f it then follows the log as it grows, until Ctrl-C or ' +
    'SIGTERM; the VM is not held meanwhile, so other commands (stop, pause, another logs) act on it as usual, and a VM ' +
    'that ends leaves the follower waiting for more (a VM started again writes to the same log). A console that is a ' +
    'socket or a pty is not a log: it is named, and the command fails.',
  flags: {
    follow: { type: 'boolean', short: 'f', help: 'keep printing what the VM writes, until Ctrl-C or SIGTERM' },
    tail: { type: 'string', value: '<lines>', help: `only the last <lines> lines of what is logged so far (0: none; at most ${MAX_TAIL_LINES})` },
  },
  positionals: [{ name: 'vm', required: true, help: 'the VM: its id, its name, or an id prefix of at least 4 characters' }],
  options: z.object({ vm: nonEmpty('a VM id, name or id prefix'), follow: flagSet(), tail: z.optional(intValue(0, MAX_TAIL_LINES)) }),
  async action(opts, ctx) {
    const host = await ctx.vmHost();
    let path: string;
    try {
      const { record, vm } = await attachRef(host, opts.vm);
      if (vm.config.console === 'none') throw new CliFailure(`VM ${vm.id} has no console: its config says console "none"`);
      if (!vm.hypervisor.capabilities.methods.includes('vm/console')) throw new CliFailure(`plugin ${record.plugin} does not tell where a VM's console is (no vm/console)`);
      const c = await vm.console({});
      if (c.kind !== 'log') throw new CliFailure(safeLine(`the console of VM ${vm.id} is a ${c.kind} (${c.path}), not a log file that hvplug logs can read`));
      path = c.path;
    } finally {
      // Not held while following: an in-process host would keep the VM leased from every other command.
      await host.close();
    }
    const out = new Output(false);
    const { from, to } = await logRange(path, opts.tail);
    if (!opts.follow) {
      await printRange(path, from, to, (line) => out.text(line));
      return EXIT_OK;
    }
    const stop = firstSignal();
    const tail = new FileTail(path, (line) => out.text(line), {
      from,
      onError: (err) => ctx.logger.warn({ path, err: err.message }, 'cannot read the console log'),
    });
    await stop;
    // Reads what came meanwhile and the unterminated last line.
    await tail.stop();
    return EXIT_OK;
  },
});
