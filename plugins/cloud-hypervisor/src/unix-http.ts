// One HTTP/1.1 exchange over a unix socket with node's own client. Every request carries an explicit
// Content-Length: the VMM's HTTP server (micro_http) reads bodies only through it and would not see a
// chunked body at all.
import type { request as httpRequest } from 'node:http';

export interface UnixHttpRequest {
  readonly socketPath: string;
  readonly method: 'GET' | 'PUT';
  readonly path: string;
  /** JSON text of the body, if any. */
  readonly body?: string;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Responses larger than this are refused instead of buffered. */
  readonly maxResponseBytes: number;
}

export interface UnixHttpResponse {
  readonly status: number;
  readonly body: string;
}

/** The exchange did not complete: nobody listening, the VMM went away mid-request, or it timed out. */
export class UnixHttpError extends Error {
  constructor(
    message: string,
    /** errno-style code: ENOENT, ECONNREFUSED, ECONNRESET, EPIPE, ETIMEDOUT, EMSGSIZE, ... */
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'UnixHttpError';
  }
}

function codeOf(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return 'EIO';
}

/**
 * node:http is loaded on first use: it cannot be loaded while node builds a startup snapshot of the plugin
 * (its module needs Array.prototype.toSorted, which the snapshot builder of Node 20 lacks), and a snapshot
 * has no dynamic import(), hence getBuiltinModule (Node >= 20.16) first.
 */
let http: { request: typeof httpRequest } | undefined;

async function loadHttp(): Promise<{ request: typeof httpRequest }> {
  return process.getBuiltinModule?.('node:http') ?? (await import('node:http'));
}

export async function unixHttp(req: UnixHttpRequest): Promise<UnixHttpResponse> {
  const { request } = (http ??= await loadHttp());
  return new Promise((resolve, reject) => {
    if (req.signal?.aborted) {
      reject(req.signal.reason);
      return;
    }
    const body = req.body === undefined ? undefined : Buffer.from(req.body, 'utf8');
    const headers: Record<string, string | number> = { Accept: 'application/json', 'Content-Length': body?.length ?? 0 };
    if (body) headers['Content-Type'] = 'application/json';
    // A fresh connection per request: nothing stale survives a VMM restart on the same path.
    const r = request({ socketPath: req.socketPath, path: req.path, method: req.method, headers, agent: false });
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const fail = (err: UnixHttpError | unknown): void =>
      settle(() => {
        r.destroy();
        reject(err);
      });
    const onAbort = (): void => fail(req.signal?.reason);
    const timer = setTimeout(
      () => fail(new UnixHttpError(`no answer on ${req.socketPath} within ${req.timeoutMs} ms`, 'ETIMEDOUT')),
      req.timeoutMs,
    );
    req.signal?.addEventListener('abort', onAbort, { once: true });
    r.on('error', (e) => fail(new UnixHttpError(`${req.method} ${req.path} on ${req.socketPath}: ${e.message}`, codeOf(e), { cause: e })));
    r.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > req.maxResponseBytes) {
          fail(new UnixHttpError(`response to ${req.method} ${req.path} exceeds ${req.maxResponseBytes} bytes`, 'EMSGSIZE'));
          return;
        }
        chunks.push(c);
      });
      res.on('error', (e) => fail(new UnixHttpError(`${req.method} ${req.path}: ${e.message}`, codeOf(e), { cause: e })));
      // 'aborted' without 'end' means the VMM closed the connection half-way through the response.
      res.on('aborted', () => fail(new UnixHttpError(`${req.method} ${req.path}: connection closed mid-response`, 'ECONNRESET')));
      res.on('end', () => settle(() => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') })));
    });
    r.end(body);
  });
}
