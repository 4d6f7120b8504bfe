import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PluginExitedError, PluginHost } from 'hvplug';
import { LOG_LINE_BURST, LOG_LINE_RATE, MAX_LOG_LINE_BYTES, PluginLog, STDERR_TAIL_BYTES, STDERR_TAIL_LINES } from '../../src/core/plugin-log.js';
import { eventually, fixture, memoryLogger, removeTempDirs, tempDir } from '../helpers.js';

const MiB = 1024 * 1024;
/** Room for the marker a cut line ends with, `… [truncated N bytes]`. */
const MARKER_ROOM = 40;

const bytes = (s: string): number => Buffer.byteLength(s);
const tailBytes = (lines: readonly string[]): number => lines.reduce((n, l) => n + bytes(l), 0);

describe('PluginLog caps', () => {
  it('are the documented ones', () => {
    expect(MAX_LOG_LINE_BYTES).toBe(64 * 1024);
    expect(STDERR_TAIL_LINES).toBe(20);
    expect(STDERR_TAIL_BYTES).toBe(8 * 1024);
    expect(LOG_LINE_RATE).toBe(1_000);
    expect(LOG_LINE_BURST).toBe(5_000);
  });

  it('logs a burst of lines up to its budget, counts the rest in one warning, and keeps the newest in the tail', () => {
    const mem = memoryLogger();
    const log = new PluginLog(mem.logger);
    const total = LOG_LINE_BURST * 3;
    log.push(Buffer.from(Array.from({ length: total }, (_, i) => `line ${i}\n`).join('')));
    log.flush();
    const logged = mem.lines().filter((l) => String(l.msg).startsWith('line ')).length;
    // The budget refills while the lines are handled (LOG_LINE_RATE a second): a few more than the burst get through.
    const unlogged = mem.lines().reduce((n, l) => n + (typeof l.unlogged === 'number' ? l.unlogged : 0), 0);
    expect(logged).toBeGreaterThanOrEqual(LOG_LINE_BURST);
    expect(unlogged).toBeGreaterThan(0);
    expect(logged + unlogged).toBe(total);
    expect(mem.lines().at(-1)).toMatchObject({ level: 40, unlogged: expect.any(Number) });
    expect(log.lastLines().at(-1)).toBe(`line ${total - 1}`);
  });

  it("logs a plugin's fatal line at error: pino flushes synchronously at fatal", () => {
    const mem = memoryLogger();
    const log = new PluginLog(mem.logger);
    log.push(Buffer.from('{"level":60,"msg":"the plugin is going down"}\n'));
    expect(mem.lines()).toEqual([expect.objectContaining({ level: 50, msg: 'the plugin is going down' })]);
  });

  it('1000 chunks of 64 KiB without a newline keep at most one line cap buffered', () => {
    const mem = memoryLogger();
    const log = new PluginLog(mem.logger);
    const chunk = Buffer.alloc(64 * 1024, 'x');
    for (let i = 0; i < 1000; i++) {
      log.push(chunk);
      expect(log.pendingBytes).toBeLessThanOrEqual(MAX_LOG_LINE_BYTES);
    }
    log.push(Buffer.from('\nafter\n'));
    expect(log.pendingBytes).toBe(0);
    const msgs = mem.lines().map((l) => String(l.msg));
    expect(msgs).toHaveLength(2);
    expect(bytes(msgs[0]!)).toBeLessThanOrEqual(MAX_LOG_LINE_BYTES + MARKER_ROOM);
    expect(msgs[0]).toMatch(new RegExp(`^x+… \\[truncated ${1000 * 64 * 1024 - MAX_LOG_LINE_BYTES} bytes\\]$`));
    expect(msgs[1]).toBe('after');
    expect(tailBytes(log.lastLines())).toBeLessThanOrEqual(STDERR_TAIL_BYTES);
    expect(log.lastLines().at(-1)).toBe('after');
  });

  it('keeps the tail within its line and byte caps, the newest lines last', () => {
    const log = new PluginLog(memoryLogger().logger);
    for (let i = 0; i < 100; i++) log.push(Buffer.from(`line ${i} ${'y'.repeat(1000)}\n`));
    const tail = log.lastLines();
    expect(tail.length).toBeLessThanOrEqual(STDERR_TAIL_LINES);
    expect(tailBytes(tail)).toBeLessThanOrEqual(STDERR_TAIL_BYTES);
    expect(tail.at(-1)).toMatch(/^line 99 /);
    for (let i = 0; i < 30; i++) log.push(Buffer.from(`short ${i}\n`));
    expect(log.lastLines()).toEqual(Array.from({ length: STDERR_TAIL_LINES }, (_, i) => `short ${i + 10}`));
  });

  it('splits lines across chunks, drops \\r and blank lines, and never cuts a UTF-8 character', () => {
    const mem = memoryLogger();
    const log = new PluginLog(mem.logger);
    const text = Buffer.from('first é line\r\n\nsecond\n');
    for (let i = 0; i < text.length; i++) log.push(text.subarray(i, i + 1));
    // One ASCII byte first, so that the cap falls in the middle of an é.
    log.push(Buffer.from(`a${'é'.repeat(MAX_LOG_LINE_BYTES)}`));
    log.flush();
    const msgs = mem.lines().map((l) => String(l.msg));
    expect(msgs.slice(0, 2)).toEqual(['first é line', 'second']);
    expect(msgs[2]).not.toContain('\uFFFD');
    expect(msgs[2]).toMatch(/^aé+… \[truncated \d+ bytes\]$/);
    const kept = bytes(msgs[2]!.replace(/… \[.*$/, ''));
    expect(kept).toBe(MAX_LOG_LINE_BYTES - 1);
    expect(kept + Number(/(\d+) bytes/.exec(msgs[2]!)?.[1])).toBe(2 * MAX_LOG_LINE_BYTES + 1);
  });
});

describe('re-emitted plugin log lines', () => {
  it("nest the plugin's own fields under `fields`; the host's plugin and pid cannot be forged", () => {
    const mem = memoryLogger();
    const log = new PluginLog(mem.logger.child({ plugin: 'real', pid: 4242 }));
    log.push(Buffer.from('{"level":40,"time":1,"hostname":"h","plugin":"other","pid":1,"vmId":"vm-1","msg":"forged"}\n'));
    log.push(Buffer.from('{"level":30}\n{"level":30,"msg":{"not":"a string"}}\n'));
    const [forged, bare, odd] = mem.lines();
    expect(forged).toMatchObject({ level: 40, plugin: 'real', pid: 4242, msg: 'forged', fields: { plugin: 'other', vmId: 'vm-1' } });
    expect(forged).not.toHaveProperty('vmId');
    expect(bare).toMatchObject({ level: 30, plugin: 'real', pid: 4242, msg: '' });
    expect(bare).not.toHaveProperty('fields');
    // Not a pino line (msg is not a string): kept as text, like any other line.
    expect(odd).toMatchObject({ level: 40, plugin: 'real', pid: 4242, stderr: true, msg: '{"level":30,"msg":{"not":"a string"}}' });
  });

  it('log a plain-text line at warn: visible at the default level of the CLI and of an embedder (a stack trace, a script\'s echo)', () => {
    const mem = memoryLogger();
    const log = new PluginLog(mem.logger.child({ plugin: 'real', pid: 4242 }));
    log.push(Buffer.from('TypeError: cannot read properties of undefined\n'));
    expect(mem.lines()).toEqual([expect.objectContaining({ level: 40, stderr: true, msg: 'TypeError: cannot read properties of undefined' })]);
  });
});

describe("a plugin's stderr through the host", () => {
  const hosts: PluginHost[] = [];
  afterEach(async () => {
    await Promise.all(hosts.splice(0).map((h) => h.close()));
    await removeTempDirs();
  });

  async function floodHost(): Promise<{ host: PluginHost; mem: ReturnType<typeof memoryLogger> }> {
    const dir = await tempDir();
    const mem = memoryLogger();
    const host = new PluginHost({
      stateDir: join(dir, 'state'),
      runtimeDir: join(dir, 'run'),
      plugins: [{ name: 'flood', command: fixture('stderr-flood') }],
      logger: mem.logger,
      supervision: { backoffMs: 60_000, healthIntervalMs: 0 },
    });
    hosts.push(host);
    return { host, mem };
  }

  it('a 64 MiB line without a newline keeps the host responsive and the kept bytes capped', async () => {
    const { host, mem } = await floodHost();
    const hv = await host.hypervisor('flood');
    let last = performance.now();
    let maxGap = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }, 10);
    const fill = 64 * MiB;
    let err: unknown;
    try {
      err = await hv.extension('x-flood/write', { text: 'fatal: before the flood\n', fill, exit: 3 }, { timeoutMs: null }).catch((e: unknown) => e);
    } finally {
      clearInterval(ticker);
    }
    // A liveness bound, not a speed target: the event loop was never held for a second.
    expect(maxGap).toBeLessThan(1_000);
    expect(err).toBeInstanceOf(PluginExitedError);
    const tail = (err as PluginExitedError).stderrTail;
    expect(tail.length).toBeLessThanOrEqual(STDERR_TAIL_LINES);
    expect(tailBytes(tail)).toBeLessThanOrEqual(STDERR_TAIL_BYTES);
    expect(tail[0]).toBe('fatal: before the flood');
    expect(tail.at(-1)).toMatch(/^x+… \[truncated \d+ bytes\]$/);
    expect((err as Error).message.length).toBeLessThan(STDERR_TAIL_BYTES + 200);
    const flood = mem.lines().find((l) => typeof l.msg === 'string' && l.msg.startsWith('xxx'));
    expect(flood).toMatchObject({ plugin: 'flood', stderr: true });
    const msg = String(flood?.msg);
    expect(bytes(msg)).toBeLessThanOrEqual(MAX_LOG_LINE_BYTES + MARKER_ROOM);
    expect(msg).toMatch(new RegExp(`… \\[truncated ${fill - MAX_LOG_LINE_BYTES} bytes\\]$`));
  }, 60_000);

  it('a forged pino line from a real plugin carries the host-bound plugin and pid', async () => {
    const { host, mem } = await floodHost();
    const hv = await host.hypervisor('flood');
    const pid = (await host.client('flood'))!.pid;
    await hv.extension('x-flood/write', { text: '{"level":50,"plugin":"other","pid":1,"msg":"forged"}\n' });
    await eventually(() => mem.lines().some((l) => l.msg === 'forged'), 5_000, 'the forged line');
    const line = mem.lines().find((l) => l.msg === 'forged');
    expect(line).toMatchObject({ level: 50, plugin: 'flood', pid, fields: { plugin: 'other' } });
  });
});
