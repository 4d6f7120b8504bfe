// Event-monitor output: the parser on the real format (pretty-printed JSON objects separated by a blank
// line, event_monitor/src/lib.rs), and the sequence a VMM emits for a VM's life, through path= and fd=.
import { appendFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CloudHypervisorClient } from '../../src/api-client.js';
import { ChEvent, EventStreamParser, eventTimeMs, followEventFile, readEventStream, type EventParseResult } from '../../src/event-monitor.js';
import { bundleDouble, removeDoubleBundle } from '../../test-support/double-bundle.js';
import { chooseTarget, startVmm, targetFor, type VmmProcess, type VmmTarget } from '../../test-support/vmm-process.js';
import { eventually, removeTempDirs, tempDir } from '../../../../test/helpers.js';

/** What serde_json::to_string_pretty writes, followed by the monitor's "\n\n". */
const PRETTY = `{
  "timestamp": {
    "secs": 0,
    "nanos": 1000
  },
  "source": "vmm",
  "event": "starting",
  "properties": null
}

{
  "timestamp": {
    "secs": 5,
    "nanos": 123456789
  },
  "source": "vm",
  "event": "device-removed",
  "properties": {
    "id": "_disk2",
    "bdf": "0000:00:06.0"
  }
}

`;

const events = (rs: EventParseResult[]): ChEvent[] => rs.flatMap((r) => (r.kind === 'event' ? [r.event] : []));

describe('EventStreamParser', () => {
  it('reads pretty-printed events separated by blank lines', () => {
    const p = new EventStreamParser();
    const got = events(p.push(PRETTY));
    expect(got).toEqual([
      { timestamp: { secs: 0, nanos: 1000 }, source: 'vmm', event: 'starting', properties: null },
      { timestamp: { secs: 5, nanos: 123456789 }, source: 'vm', event: 'device-removed', properties: { id: '_disk2', bdf: '0000:00:06.0' } },
    ]);
    expect(eventTimeMs(got[1]!)).toBeCloseTo(5123.456789, 6);
    expect(p.end()).toEqual([]);
  });

  it('reads compact one-line events too', () => {
    const line = (e: string): string => JSON.stringify({ timestamp: { secs: 1, nanos: 2 }, source: 'vm', event: e, properties: null });
    expect(events(new EventStreamParser().push(`${line('booting')}\n${line('booted')}\n`)).map((e) => e.event)).toEqual(['booting', 'booted']);
  });

  it('gives the same events whatever the chunking, including multi-byte characters split across chunks', () => {
    const text = PRETTY.replace('_disk2', 'dïsk→2');
    const bytes = Buffer.from(text, 'utf8');
    const whole = events(new EventStreamParser().push(bytes));
    const p = new EventStreamParser();
    const pieces: ChEvent[] = [];
    for (let i = 0; i < bytes.length; i++) pieces.push(...events(p.push(bytes.subarray(i, i + 1))));
    expect(pieces).toEqual(whole);
    expect(pieces[1]?.properties?.id).toBe('dïsk→2');
  });

  it('is not fooled by braces and escaped quotes inside strings', () => {
    const ev = { timestamp: { secs: 0, nanos: 0 }, source: 'vm', event: 'x', properties: { note: 'a } b { c \\" d "}' } };
    expect(events(new EventStreamParser().push(JSON.stringify(ev, null, 2)))).toEqual([ev]);
  });

  it('reports junk, objects that are not events, and a truncated tail, and carries on', () => {
    const p = new EventStreamParser();
    const out = [...p.push('garbage\n{"not":"an event"}\n'), ...p.push(PRETTY), ...p.push('{"timestamp": {"secs"'), ...p.end()];
    expect(out.map((r) => r.kind)).toEqual(['invalid', 'invalid', 'event', 'event', 'invalid']);
    expect(out[0]).toMatchObject({ text: 'garbage', reason: 'text outside an event object' });
    expect(out[1]).toMatchObject({ kind: 'invalid', reason: expect.stringContaining('timestamp') as unknown });
    expect(out[4]).toMatchObject({ reason: 'stream ended inside an event' });
  });

  it("gives each result's end offset in bytes, so a reader can resume after it", () => {
    const bytes = Buffer.from(PRETTY.replace('_disk2', 'dïsk'), 'utf8');
    const out = new EventStreamParser().push(bytes);
    const first = out[0]!;
    const rest = events(new EventStreamParser().push(bytes.subarray(first.endByte)));
    expect(rest.map((e) => e.event)).toEqual(['device-removed']);
    expect(out[1]!.endByte).toBe(bytes.indexOf('}\n\n', bytes.length - 4) + 1);
  });

  it('reads a stream (the pipe of --event-monitor fd=)', async () => {
    const got: string[] = [];
    for await (const r of readEventStream(Readable.from([Buffer.from(PRETTY.slice(0, 50)), Buffer.from(PRETTY.slice(50))]))) {
      if (r.kind === 'event') got.push(r.event.event);
    }
    expect(got).toEqual(['starting', 'device-removed']);
  });
});

describe('followEventFile', () => {
  afterEach(removeTempDirs);

  it('follows a file as it is appended, waits for it to exist, restarts after truncation, resumes from an offset', async () => {
    const dir = await tempDir('ch-events-');
    const file = join(dir, 'events.json');
    const ac = new AbortController();
    const seen: EventParseResult[] = [];
    const done = (async () => {
      for await (const r of followEventFile(file, { pollMs: 10, signal: ac.signal })) seen.push(r);
    })();
    const [a, b] = PRETTY.split('\n\n');
    await new Promise((r) => setTimeout(r, 30));
    await writeFile(file, `${a}\n\n`);
    await eventually(() => seen.length === 1, 2_000, 'the first event');
    await appendFile(file, b!.slice(0, 20));
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toHaveLength(1);
    await appendFile(file, `${b!.slice(20)}\n\n`);
    await eventually(() => seen.length === 2, 2_000, 'the second event');
    // A VMM restarted on the same path truncates it.
    await truncate(file, 0);
    await new Promise((r) => setTimeout(r, 30));
    await writeFile(file, `${b}\n\n`);
    await eventually(() => seen.length === 3, 2_000, 'the event after truncation');
    ac.abort();
    await done;
    expect(events(seen).map((e) => e.event)).toEqual(['starting', 'device-removed', 'device-removed']);

    await writeFile(file, PRETTY);
    const firstEnd = new EventStreamParser().push(PRETTY)[0]!.endByte;
    const resumed: string[] = [];
    const ac2 = new AbortController();
    for await (const r of followEventFile(file, { fromOffset: firstEnd, pollMs: 10, signal: ac2.signal })) {
      if (r.kind === 'event') resumed.push(r.event.event);
      expect(r.endByte).toBe(Buffer.byteLength(PRETTY.trimEnd()));
      ac2.abort();
    }
    expect(resumed).toEqual(['device-removed']);
  });
});

const choice = chooseTarget();
let target: VmmTarget;
const running: VmmProcess[] = [];
const canBoot = (): boolean => choice.kind === 'double' || process.env.HVPLUG_CH_KERNEL !== undefined;

/** `expected` appears in `actual` in order; the real VMM interleaves more (virtio-device activations). */
function inOrder(actual: readonly string[], expected: readonly string[]): boolean {
  let i = 0;
  for (const a of actual) if (a === expected[i]) i++;
  return i === expected.length;
}

describe('events a VMM writes for a VM life', () => {
  beforeAll(async () => {
    target = targetFor(choice, choice.kind === 'double' ? await bundleDouble() : undefined);
    console.info(`[cloud-hypervisor] event tests target the ${choice.kind === 'real' ? 'REAL cloud-hypervisor binary' : 'contract double'} (${choice.reason})`);
  }, 60_000);
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.stop()));
    await removeTempDirs();
  });
  afterAll(removeDoubleBundle);

  const LIFE = [
    'vmm/starting', 'vm/booting', 'vm/booted', 'vm/pausing', 'vm/paused', 'vm/snapshotting', 'vm/snapshotted', 'vm/resuming', 'vm/resumed',
    'vm/device-removed', 'vm/resizing', 'vm/resized', 'vm/rebooting', 'vm/rebooted', 'vm/shutdown', 'vm/deleted', 'vmm/shutdown',
  ];

  async function live(client: CloudHypervisorClient, dir: string): Promise<string> {
    const kernel = process.env.HVPLUG_CH_KERNEL ?? join(dir, 'vmlinux');
    if (choice.kind === 'double') await writeFile(kernel, 'kernel');
    const disk = join(dir, 'disk.img');
    await writeFile(disk, '');
    await truncate(disk, 1 << 20);
    await client.createVm({ payload: { kernel }, cpus: { boot_vcpus: 1, max_vcpus: 2 } });
    await client.bootVm();
    await client.pauseVm();
    await client.snapshotVm({ destination_url: `file://${dir}` });
    await client.resumeVm();
    const added = await client.addDisk({ path: disk, id: 'extra' });
    await client.removeDevice({ id: 'extra' });
    await client.resizeVm({ desired_vcpus: 2 });
    await client.rebootVm();
    await client.shutdownVm();
    await client.deleteVm();
    await client.shutdownVmm();
    return added?.bdf ?? '';
  }

  it.skipIf(!canBoot())('--event-monitor path= gets starting, booting ... deleted, vmm shutdown, with device-removed properties', async () => {
    const dir = await tempDir('ch-ev-');
    const file = join(dir, 'events.json');
    const proc = await startVmm(target, { socketPath: join(dir, 'api.sock'), eventFile: file });
    running.push(proc);
    const client = new CloudHypervisorClient({ socketPath: proc.socketPath });
    await client.waitReady({ timeoutMs: 10_000 });
    const bdf = await live(client, dir);
    await proc.exited;
    const ac = new AbortController();
    const got: ChEvent[] = [];
    for await (const r of followEventFile(file, { pollMs: 10, signal: ac.signal })) {
      expect(r.kind).toBe('event');
      if (r.kind === 'event') got.push(r.event);
      if (r.kind === 'event' && r.event.source === 'vmm' && r.event.event === 'shutdown') ac.abort();
    }
    const names = got.map((e) => `${e.source}/${e.event}`);
    expect(inOrder(names, LIFE), names.join(' ')).toBe(true);
    if (choice.kind === 'double') expect(names).toEqual(LIFE);
    expect(got.find((e) => e.event === 'device-removed')?.properties).toEqual({ id: 'extra', bdf });
    const times = got.map(eventTimeMs);
    expect([...times].sort((x, y) => x - y)).toEqual(times);
  });

  it.skipIf(!canBoot())('--event-monitor fd=3 writes the same events into an inherited pipe', async () => {
    const dir = await tempDir('ch-ev-');
    const proc = await startVmm(target, { socketPath: join(dir, 'api.sock'), extraArgs: ['--event-monitor', 'fd=3'], extraStdio: ['pipe'] });
    running.push(proc);
    const pipe = proc.child.stdio[3];
    if (!(pipe instanceof Readable)) throw new Error('fd 3 is not a readable pipe');
    const collected = (async () => {
      const out: string[] = [];
      for await (const r of readEventStream(pipe)) if (r.kind === 'event') out.push(`${r.event.source}/${r.event.event}`);
      return out;
    })();
    const client = new CloudHypervisorClient({ socketPath: proc.socketPath });
    await client.waitReady({ timeoutMs: 10_000 });
    await live(client, dir);
    await proc.exited;
    const names = await collected;
    expect(inOrder(names, LIFE), names.join(' ')).toBe(true);
  });
});
