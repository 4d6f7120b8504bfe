import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { formatIssues, methodDef, toIssues, VmResult } from 'hvplug/protocol';
import { FrameDecoder, frameText } from 'hvplug/transport';
import { bootId, startTimeOf } from '../../src/core/proc.js';
import { DAEMON_METHODS } from '../../src/daemon/api.js';
import { DaemonLockInfo } from '../../src/daemon/lock.js';
import { FastCallRef, FastLock, fastVmResult, parseFastLine, runFast, warmFast } from '../../src/cli/fast.js';
import { FAST_COMMANDS as FACT_COMMANDS, fastFacts, type FastFacts } from '../../src/cli/fast-facts.js';
import { FAST_COMMANDS } from '../../src/cli/main.js';

const facts = fastFacts();
const PAUSE = facts.commands.pause.method;

describe('the fast path of pause and resume', () => {
  it('knows the commands main.ts sends it, and takes their methods from the table', () => {
    expect([...FAST_COMMANDS].sort()).toEqual([...FACT_COMMANDS].sort());
    for (const name of FACT_COMMANDS) {
      const def = methodDef(facts.commands[name].method as Parameters<typeof methodDef>[0]);
      expect({ api: def.api, scope: def.scope, timeoutMs: def.timeoutMs }).toEqual({ api: name, scope: 'vm', timeoutMs: facts.commands[name].timeoutMs });
    }
  });

  it("parses the daemon's lock, callRef's answer and a call's answer as the full CLI's schemas do", () => {
    const json = (s: z.core.$ZodType) => z.toJSONSchema(s, { unrepresentable: 'any' });
    expect(json(FastLock)).toEqual(json(DaemonLockInfo));
    expect(json(FastCallRef)).toEqual(json(DAEMON_METHODS.callRef.result));
    const mini = fastVmResult(facts.statuses);
    for (const v of [{ status: 'paused' }, { status: 'paused', state: { a: [1, null] } }, { status: 'gone' }, { status: 'running', state: Number.NaN }, {}, null]) {
      const a = mini.safeParse(v);
      const b = VmResult.safeParse(v);
      expect(a.success, JSON.stringify(v)).toBe(b.success);
      if (!a.success && !b.success) expect(a.error.issues.map((i) => [i.path, i.message])).toEqual(b.error.issues.map((i) => [i.path, i.message]));
    }
  });

  it('takes only the plain command lines, and leaves every other to the full CLI', () => {
    const names = Object.keys(facts.commands);
    expect(parseFastLine(['pause', 'web'], names)).toEqual({ command: 'pause', ref: 'web', json: false });
    expect(parseFastLine(['--state-dir', 's', '--runtime-dir=r', 'resume', 'web', '--json'], names)).toEqual({ command: 'resume', ref: 'web', json: true, stateDir: join(process.cwd(), 's') });
    expect(parseFastLine(['pause', 'web', '--state-dir=/s'], names)).toMatchObject({ stateDir: '/s' });
    for (const argv of [
      [],
      ['pause'],
      ['ps'],
      ['stop', 'web'],
      ['help', 'pause'],
      ['pause', 'a', 'b'],
      ['pause', ''],
      ['pause', '--help', 'web'],
      ['pause', '-h', 'web'],
      ['--json', 'pause', 'web'],
      ['pause', 'web', '--json', '--json'],
      ['pause', '--', 'web'],
      ['pause', 'web', '--log-level', 'debug'],
      ['--state-dir', 's', 'pause', 'web', '--state-dir', 's'],
      ['--state-dir', '--json', 'pause', 'web'],
      ['--state-dir=', 'pause', 'web'],
      ['--state-dir'],
      ['--config', 'x.toml', 'pause', 'web'],
    ]) {
      expect(parseFastLine(argv, names), argv.join(' ')).toBeUndefined();
    }
  });
});

/** A daemon that answers the fast path's callRef from a script, on a real unix socket, with a real lock file. */
interface Script {
  /** The answer to callRef: a result (of the call, or callRef's own whole when `whole`), an error, or 'close' / 'silent'. */
  call?: { result: unknown } | { error: { code: number; message: string; data?: unknown } } | 'close' | 'silent';
  whole?: boolean;
}

let dir: string;
let server: Server | undefined;
let seen: string[];
let sent: unknown[];
let out: string;
let err: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hvplug-fast-'));
  seen = [];
  sent = [];
  out = '';
  err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
});

afterEach(async () => {
  vi.restoreAllMocks();
  await stopDaemon();
  await rm(dir, { recursive: true, force: true });
});

let daemons = 0;

async function stopDaemon(): Promise<void> {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
}

async function daemon(script: Script): Promise<void> {
  await stopDaemon();
  const socket = join(dir, `d${daemons++}.sock`);
  const state = join(dir, 'state');
  server = createServer((conn: Socket) => {
    const decoder = new FrameDecoder();
    conn.on('error', () => undefined);
    conn.on('data', (chunk: Buffer) => {
      for (const body of decoder.push(chunk)) {
        const msg = JSON.parse(body.toString()) as { id?: number; method: string; params?: unknown };
        seen.push(msg.method);
        if (msg.method === facts.callRef) sent.push(msg.params);
        const answer = (value: object) => conn.write(frameText(JSON.stringify({ jsonrpc: '2.0', id: msg.id, ...value })));
        const call = script.call ?? { result: { status: 'paused' } };
        if (call === 'close') conn.destroy();
        else if (call !== 'silent' && msg.id !== undefined) answer('result' in call && !script.whole ? { result: { vmId: 'vm-1', result: call.result } } : call);
      }
    });
  });
  await new Promise<void>((r) => server!.listen(socket, () => r()));
  const lock = { pid: process.pid, startTime: startTimeOf(process.pid), bootId: bootId(), hostname: 'h', instance: 'i', since: 'now', socket, stateDir: state };
  await mkdir(state, { recursive: true });
  await writeFile(join(state, facts.lockFile), JSON.stringify(lock));
}

const run = (args: string[], f: FastFacts = facts) => runFast(['--state-dir', join(dir, 'state'), ...args], f);

describe('runFast against a daemon', () => {
  it('pauses a VM by name in one request and prints its id, or {id, status} with --json', async () => {
    await daemon({});
    expect(await run(['pause', 'web'])).toBe(0);
    expect(await run(['pause', 'web', '--json'])).toBe(0);
    expect(out).toBe('vm-1\n{"id":"vm-1","status":"paused"}\n');
    expect(seen).toEqual([facts.callRef, facts.callRef]);
    expect(sent).toEqual([1, 2].map(() => ({ apiVersion: facts.apiVersion, ref: 'web', method: PAUSE })));
  });

  it('leaves to the full CLI what it or the daemon declines, having done nothing', async () => {
    expect(await run(['pause', 'web'])).toBeUndefined(); // no daemon
    for (const call of [
      { error: { code: facts.declinedCode, message: 'declined: no VM "web"', data: { declined: 'ref' } } },
      // A daemon that does not serve callRef: the JSON-RPC layer's answer, without hvplug's data.
      { error: { code: facts.methodNotFoundCode, message: `Unhandled method ${facts.callRef}` } },
    ]) {
      await daemon({ call });
      expect(await run(['pause', 'web']), JSON.stringify(call)).toBeUndefined();
    }
    expect(out + err).toBe('');
    // The call's own MethodNotFound (a plugin's, with hvplug's data) and an error coded as a refusal but without its data are the call's.
    await daemon({ call: { error: { code: facts.methodNotFoundCode, message: 'vm/pause: no such method', data: { hvplug: 'MethodNotFound' } } } });
    expect(await run(['pause', 'web'])).toBe(1);
    await daemon({ call: { error: { code: facts.declinedCode, message: 'odd' } } });
    expect(await run(['pause', 'web'])).toBe(1);
    expect(err).toBe('hvplug: vm/pause: no such method\nhvplug: odd\n');
  });

  it("reports the call's failures in the full CLI's words", async () => {
    await daemon({ call: { error: { code: -31050, message: 'VM vm-1 is driven by another host', data: { hvplug: 'VmOwned' } } } });
    expect(await run(['pause', 'web'])).toBe(1);
    await daemon({ call: { error: { code: -31003, message: 'vm/pause: VM vm-1 is paused; this needs running' } } });
    expect(await run(['pause', 'web'])).toBe(1);
    await daemon({ call: { error: { code: facts.internalErrorCode, message: 'boom \u001b[2J' } } });
    expect(await run(['pause', 'web'])).toBe(1);
    await daemon({ call: { result: { status: 'gone' } } });
    expect(await run(['pause', 'web'])).toBe(1);
    await daemon({ call: 'close' });
    expect(await run(['pause', 'web'])).toBe(1);
    await daemon({ call: { result: { vmId: '', result: { status: 'paused' } } }, whole: true });
    expect(await run(['pause', 'web'])).toBe(1);
    const violation = VmResult.safeParse({ status: 'gone' });
    expect(err.split('\n')).toEqual([
      'hvplug: VM vm-1 is driven by another host',
      'hvplug: vm/pause: VM vm-1 is paused; this needs running',
      'hvplug: internal error: boom \\x1b[2J (set HVPLUG_DEBUG=1 for a stack trace)',
      `hvplug: plugin answered ${PAUSE} with a malformed result: ${violation.success ? '' : formatIssues(toIssues(violation.error))}`,
      `hvplug: the hvplug daemon (pid ${process.pid}) closed the connection; ${PAUSE} got no answer`,
      `hvplug: the hvplug daemon (pid ${process.pid}) answered ${facts.callRef} with a malformed result`,
      '',
    ]);
    expect(out).toBe('');
  });

  it("warms up for the snapshot without a daemon, a file or output, and keeps the schema a command then uses", async () => {
    const schema = fastVmResult(facts.statuses);
    warmFast(facts);
    expect(fastVmResult(facts.statuses)).toBe(schema);
    expect(out + err).toBe('');
    await daemon({});
    expect(await run(['pause', 'web'])).toBe(0);
    expect(out).toBe('vm-1\n');
  });

  it('gives up on a call at its deadline, cancelling it in the daemon', async () => {
    await daemon({ call: 'silent' });
    const quick: FastFacts = { ...facts, ownCallTimeoutMs: 0, deadlineMarginMs: 20, commands: { ...facts.commands, pause: { ...facts.commands.pause, timeoutMs: 30 } } };
    expect(await run(['pause', 'web'], quick)).toBe(1);
    expect(err).toBe(`hvplug: ${PAUSE} through the hvplug daemon (pid ${process.pid}) got no answer within 50 ms\n`);
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual([facts.callRef, '$/cancelRequest']);
  });
});
