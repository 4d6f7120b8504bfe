import { open } from 'node:fs/promises';

/**
 * The simulated guest: a tiny program run by `node -e`. It boots, then counts on its console (its
 * stdout is the console log) and powers off cleanly on SIGTERM, SIGINT or SIGHUP, or after a given
 * number of ticks. It also answers on a unix socket, standing in for an agent inside the guest.
 *
 * Every console line that matters carries the next counter value, so the plugin can read the guest's
 * state from its console alone, even for a guest it did not start.
 */
export const GUEST_TITLE = 'hvplug-example-guest';

const SCRIPT = `
const [vmId, next, tickMs, powerOffAfter, agentPath, startPaused] = process.argv.slice(1);
process.title = ${JSON.stringify(GUEST_TITLE)} + ' ' + vmId + ' ' + agentPath;
const fs = require('node:fs');
const net = require('node:net');
const say = (line) => fs.writeSync(1, line + '\\n');
let tick = Number(next);
let ticks = 0;
let timer;
const agent = net.createServer((s) => s.end('hvplug-example-agent ' + vmId + ' next=' + tick + '\\n'));
agent.on('error', (e) => say('agent: ' + e.message));
const powerOff = (code, why) => {
  clearInterval(timer);
  agent.close();
  try { fs.rmSync(agentPath, { force: true }); } catch {}
  say('power-off code=' + code + ' next=' + tick + ' ' + why);
  process.exit(code);
};
say('boot ' + vmId + ' next=' + tick + ' tickMs=' + tickMs);
if (startPaused === 'paused') process.kill(process.pid, 'SIGSTOP');
try { fs.rmSync(agentPath, { force: true }); } catch {}
agent.listen(agentPath);
timer = setInterval(() => {
  say('tick ' + tick);
  tick++;
  ticks++;
  if (Number(powerOffAfter) > 0 && ticks >= Number(powerOffAfter)) powerOff(0, 'after ' + ticks + ' ticks');
}, Number(tickMs));
for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(s, () => powerOff(0, 'on ' + s));
`;

export interface GuestArgs {
  vmId: string;
  /** The counter value the guest prints first: 0 at boot, the saved one after a restore. */
  nextTick: number;
  tickMs: number;
  /** 0: never. */
  powerOffAfterTicks: number;
  agentSocketPath: string;
  /** Stop (SIGSTOP) itself right after the boot line, before the first tick: a restored VM comes back paused. */
  startPaused: boolean;
  /** Host threads to reserve, one per possible vCPU (see vm/threads). */
  threads: number;
}

/** argv for process.execPath. */
export function guestArgv(a: GuestArgs): string[] {
  // The V8 platform pool gives the process real threads to stand for vCPUs; it never shrinks or grows.
  return [
    `--v8-pool-size=${Math.max(1, a.threads)}`,
    '-e',
    SCRIPT,
    a.vmId,
    String(a.nextTick),
    String(a.tickMs),
    String(a.powerOffAfterTicks),
    a.agentSocketPath,
    a.startPaused ? 'paused' : 'running',
  ];
}

/** What the console says about the guest. */
export interface ConsoleReading {
  /** The counter value the guest would print next; undefined if the console holds none of our lines. */
  nextTick?: number;
  booted: boolean;
  /** Set when the guest's last counter line is a clean power-off: it ended by itself, not by a kill. */
  powerOff?: { code: number };
}

const TAIL_BYTES = 8192;

/** Reads the console from `offset` (the start of the current boot), or its tail when that is far back. */
export async function readConsole(path: string, offset = 0): Promise<ConsoleReading> {
  let text = '';
  try {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      const from = Math.max(offset, size - TAIL_BYTES);
      const buf = Buffer.alloc(size - from);
      await fh.read(buf, 0, buf.length, from);
      text = buf.toString('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return { booted: false };
  }
  const lines = text.split('\n').filter((l) => l.length > 0);
  const out: ConsoleReading = { booted: lines.some((l) => l.startsWith('boot ')) };
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i] as string;
    const tick = /^tick (\d+)$/.exec(line);
    const next = /^(?:boot|power-off) .*\bnext=(\d+)/.exec(line);
    if (tick) out.nextTick = Number(tick[1]) + 1;
    else if (next) out.nextTick = Number(next[1]);
    else continue;
    const off = /^power-off code=(\d+)/.exec(line);
    if (off) out.powerOff = { code: Number(off[1]) };
    break;
  }
  return out;
}

/** The console's last lines, for error messages. */
export async function consoleTail(path: string, lines = 5): Promise<string> {
  try {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      const buf = Buffer.alloc(Math.min(size, 2048));
      await fh.read(buf, 0, buf.length, size - buf.length);
      return buf.toString('utf8').trimEnd().split('\n').slice(-lines).join(' | ');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}
