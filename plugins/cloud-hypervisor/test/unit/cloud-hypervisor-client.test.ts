// The REST client against a scripted unix-socket server: what goes on the wire, and how each way an
// exchange can go wrong reaches the caller.
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ChApiError, ChConnectionError, ChResponseError, CloudHypervisorClient, vmmMessages } from '../../src/api-client.js';
import { removeTempDirs, tempDir } from '../../../../test/helpers.js';

const servers: { close(cb: () => void): void }[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
  await removeTempDirs();
});

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

async function httpServer(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ socketPath: string; seen: Seen[] }> {
  const socketPath = join(await tempDir('ch-client-'), 'api.sock');
  const seen: Seen[] = [];
  const server = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(socketPath, r));
  return { socketPath, seen };
}

async function rawServer(onConnection: (s: Socket) => void): Promise<string> {
  const socketPath = join(await tempDir('ch-client-'), 'api.sock');
  const open = new Set<Socket>();
  const server: Server = createServer((s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    onConnection(s);
  });
  // A silent server's connections would keep close() waiting.
  servers.push({ close: (cb) => (server.close(cb), open.forEach((s) => s.destroy())) });
  await new Promise<void>((r) => server.listen(socketPath, r));
  return socketPath;
}

const reply = (res: ServerResponse, status: number, body?: string): void => {
  res.writeHead(status, body === undefined ? {} : { 'Content-Type': 'application/json' });
  res.end(body);
};

describe('CloudHypervisorClient on the wire', () => {
  it('sends each call to /api/v1/<endpoint> with the method the document gives and an explicit Content-Length', async () => {
    const { socketPath, seen } = await httpServer((req, res) => {
      if (req.url?.endsWith('vm.info')) return reply(res, 200, JSON.stringify({ config: { payload: {} }, state: 'Created' }));
      if (req.url?.endsWith('vm.add-disk')) return reply(res, 200, JSON.stringify({ id: 'd', bdf: '0000:00:05.0' }));
      reply(res, 204);
    });
    const c = new CloudHypervisorClient({ socketPath });
    await c.bootVm();
    await c.createVm({ payload: { kernel: '/k' } });
    expect(await c.vmInfo()).toMatchObject({ state: 'Created' });
    expect(await c.addDisk({ path: '/d' })).toEqual({ id: 'd', bdf: '0000:00:05.0' });
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(['PUT /api/v1/vm.boot', 'PUT /api/v1/vm.create', 'GET /api/v1/vm.info', 'PUT /api/v1/vm.add-disk']);
    expect(seen[0]).toMatchObject({ body: '', headers: { 'content-length': '0' } });
    expect(seen[0]!.headers['transfer-encoding']).toBeUndefined();
    expect(seen[1]).toMatchObject({ body: '{"payload":{"kernel":"/k"}}', headers: { 'content-length': '27', 'content-type': 'application/json' } });
  });

  it('turns an error status into ChApiError with the endpoint, the status and the VMM messages', async () => {
    const { socketPath } = await httpServer((_req, res) => reply(res, 500, JSON.stringify(['Error from API', 'The VM could not be paused', 'VM is not running'])));
    const err = await new CloudHypervisorClient({ socketPath }).pauseVm().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChApiError);
    expect(err).toMatchObject({ endpoint: 'vm.pause', status: 500, messages: ['Error from API', 'The VM could not be paused', 'VM is not running'] });
    expect((err as Error).message).toBe('cloud-hypervisor vm.pause failed with HTTP 500: Error from API: The VM could not be paused: VM is not running');
  });

  it("keeps a non-JSON error body whole (micro_http's own parse errors) and allows an empty one", () => {
    const body = '{ "error": "Invalid request.\nAll previous unanswered requests will be dropped." }';
    expect(vmmMessages(body)).toEqual([body]);
    expect(vmmMessages('')).toEqual([]);
    expect(vmmMessages('["a","b"]')).toEqual(['a', 'b']);
    expect(vmmMessages('[1]')).toEqual(['[1]']);
  });

  it('rejects a success answer whose body breaks the contract with ChResponseError', async () => {
    const { socketPath } = await httpServer((req, res) => {
      if (req.url?.endsWith('vmm.ping')) return reply(res, 200, JSON.stringify({ pid: 'one' }));
      if (req.url?.endsWith('vm.info')) return reply(res, 200, JSON.stringify({ config: { payload: {} }, state: 'Sleeping' }));
      reply(res, 200, 'not json');
    });
    const c = new CloudHypervisorClient({ socketPath });
    await expect(c.ping()).rejects.toBeInstanceOf(ChResponseError);
    await expect(c.ping()).rejects.toThrow(/version/);
    await expect(c.vmInfo()).rejects.toThrow(/state/);
    await expect(c.vmCounters()).rejects.toThrow(/not JSON/);
  });

  it('accepts counters beyond 2^53 (u64::MAX latency sentinels)', async () => {
    const { socketPath } = await httpServer((_req, res) => reply(res, 200, '{"_disk0":{"read_bytes":0,"read_latency_min":18446744073709551615}}'));
    // JSON.parse rounds u64::MAX to the nearest double, 2^64.
    expect(await new CloudHypervisorClient({ socketPath }).vmCounters()).toEqual({ _disk0: { read_bytes: 0, read_latency_min: 2 ** 64 } });
  });

  it('reports a VMM that closes the connection without answering, or half-way through, as ChConnectionError', async () => {
    const hangUp = await rawServer((s) => s.once('data', () => s.destroy()));
    const e1 = await new CloudHypervisorClient({ socketPath: hangUp }).vmInfo().catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(ChConnectionError);
    expect(e1).toMatchObject({ endpoint: 'vm.info', code: 'ECONNRESET' });

    const midway = await rawServer((s) =>
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"config":');
        setTimeout(() => s.destroy(), 20);
      }),
    );
    const e2 = await new CloudHypervisorClient({ socketPath: midway }).vmInfo().catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(ChConnectionError);
    expect(e2).toMatchObject({ code: 'ECONNRESET' });
  });

  it('gives up after the deadline with ETIMEDOUT, and an abort rejects with the signal reason', async () => {
    const silent = await rawServer(() => undefined);
    const c = new CloudHypervisorClient({ socketPath: silent, timeoutMs: 100 });
    const t0 = Date.now();
    await expect(c.ping()).rejects.toMatchObject({ name: 'ChConnectionError', code: 'ETIMEDOUT' });
    expect(Date.now() - t0).toBeLessThan(2_000);
    const ac = new AbortController();
    const pending = c.ping({ signal: ac.signal, timeoutMs: 10_000 });
    setTimeout(() => ac.abort(new Error('stop')), 20);
    await expect(pending).rejects.toThrow('stop');
  });

  it('refuses a response larger than its limit', async () => {
    const { socketPath } = await httpServer((_req, res) => reply(res, 200, JSON.stringify({ version: 'x'.repeat(10_000) })));
    await expect(new CloudHypervisorClient({ socketPath, maxResponseBytes: 1_000 }).ping()).rejects.toMatchObject({ code: 'EMSGSIZE' });
  });

  it('waitReady polls until the API answers and fails with the connection error past its deadline', async () => {
    const dir = await tempDir('ch-client-');
    const socketPath = join(dir, 'api.sock');
    const c = new CloudHypervisorClient({ socketPath });
    await expect(c.waitReady({ timeoutMs: 100 })).rejects.toMatchObject({ code: 'ENOENT' });
    const ready = c.waitReady({ timeoutMs: 5_000 });
    setTimeout(() => {
      const server = createHttpServer((_req, res) => reply(res, 200, JSON.stringify({ version: '54.0.0' })));
      servers.push(server);
      server.listen(socketPath);
    }, 100);
    expect(await ready).toEqual({ version: '54.0.0' });
  });
});
