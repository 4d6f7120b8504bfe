import { describe, expect, it } from 'vitest';
import { PluginLog } from '../../src/core/plugin-log.js';
import { MAX_RECORD_BYTES, stderrLogger } from '../../src/plugin-sdk/log.js';
import { memoryLogger } from '../helpers.js';

/** The SDK's logger writing into the host's parser, as a plugin's stderr reaches a host. */
function wired(): { log: ReturnType<typeof stderrLogger>; host: () => Record<string, unknown>[]; raw: string[] } {
  const mem = memoryLogger();
  const parser = new PluginLog(mem.logger);
  const raw: string[] = [];
  const log = stderrLogger('demo', (line) => {
    raw.push(line);
    parser.push(Buffer.from(line));
  });
  return { log, host: mem.lines, raw };
}

describe("the SDK's stderr logger", () => {
  it("writes pino's line: numeric level, time, the plugin's name bound, fields, msg; the host logs it at that level", () => {
    const { log, host, raw } = wired();
    log.warn({ vmId: 'vm-1', n: 3 }, 'slow');
    const line = JSON.parse(raw[0] as string) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 40, plugin: 'demo', name: 'demo', vmId: 'vm-1', n: 3, msg: 'slow' });
    expect(typeof line.time).toBe('number');
    expect(raw[0]?.endsWith('\n')).toBe(true);
    expect(host()).toHaveLength(1);
    expect(host()[0]).toMatchObject({ level: 40, msg: 'slow', fields: { plugin: 'demo', name: 'demo', vmId: 'vm-1', n: 3 } });
  });

  it('leaves out what is below its level, nothing at silent, and refuses a level it does not know', () => {
    const { log, raw } = wired();
    log.debug('hidden');
    log.info('shown');
    log.level = 'trace';
    log.trace('now shown');
    log.level = 'silent';
    log.fatal('not even this');
    expect(raw.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['shown', 'now shown']);
    expect(() => (log.level = 'loud')).toThrow(/unknown log level "loud"/);
    expect(log.level).toBe('silent');
  });

  it("serializes errors as pino's err serializer does, an error given first under err", () => {
    const { log, raw } = wired();
    const err = Object.assign(new TypeError('bad thing'), { code: 'EBAD' });
    log.error({ err }, 'failed');
    log.error(err, 'again');
    for (const l of raw) {
      expect(JSON.parse(l)).toMatchObject({ err: { type: 'TypeError', message: 'bad thing', code: 'EBAD', stack: expect.stringContaining('bad thing') } });
    }
  });

  it('formats printf arguments, and binds a child\'s fields', () => {
    const { log, raw } = wired();
    log.info('%s of %d', 'two', 3);
    log.child({ vmId: 'vm-2' }).info({ step: 1 }, 'from the child');
    expect(JSON.parse(raw[0] as string)).toMatchObject({ msg: 'two of 3' });
    expect(JSON.parse(raw[1] as string)).toMatchObject({ plugin: 'demo', vmId: 'vm-2', step: 1, msg: 'from the child' });
  });

  it('never throws: fields it cannot serialize and a record over its cap become a note, still one JSON line', () => {
    const { log, raw } = wired();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => log.info({ cyclic, big: 1n }, 'odd fields')).not.toThrow();
    log.info({ blob: 'x'.repeat(MAX_RECORD_BYTES) }, 'huge');
    const [odd, huge] = raw.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(odd).toMatchObject({ level: 30, msg: 'odd fields', plugin: 'demo', logError: expect.stringMatching(/not serializable/) });
    expect(huge).toMatchObject({ level: 30, msg: 'huge', logError: expect.stringMatching(/fields dropped/) });
    expect(Buffer.byteLength(raw[1] as string)).toBeLessThan(MAX_RECORD_BYTES);
  });
});
