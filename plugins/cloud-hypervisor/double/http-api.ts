// The HTTP front of the double, following vmm/src/api/http/{mod,http_endpoint}.rs and micro_http:
// routing on the exact path, GET/PUT only, the body taken from Content-Length alone, serde-style 400s
// for bodies the OpenAPI schema rejects, and error bodies that are JSON arrays of messages.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { ApiFailure, httpError, type StatusMode } from './errors.js';
import { isObject, withRustDefaults, type Json, type JsonObject } from './config.js';
import type { SchemaSet } from './openapi.js';
import { ADD_ENDPOINTS, type AddEndpoint, type ConfigCheck, type Vmm } from './vmm.js';

const HTTP_ROOT = '/api/v1';
const PAYLOAD_MAX = 4 << 20;

interface Reply {
  readonly status: number;
  /** JSON text of the body; absent for an empty body. */
  readonly body?: string;
}

interface Route {
  readonly method: 'GET' | 'PUT';
  /** Component schema of the request body; undefined for routes that take none. */
  readonly schema?: string;
  /** vm.create, vm.info, vmm.ping and vmm.shutdown have their own handler; the rest share VmActionHandler. */
  readonly custom?: boolean;
  readonly run: (body: JsonObject | undefined) => Promise<Reply>;
}

const noContent: Reply = { status: 204 };
const json = (value: Json): Reply => ({ status: 200, body: JSON.stringify(value) });

/** micro_http answers a request it cannot parse with this (not quite JSON) body. */
function parseErrorBody(message: string): string {
  return `{ "error": "${message}\nAll previous unanswered requests will be dropped." }`;
}

export interface ApiServerOptions {
  readonly vmm: Vmm;
  readonly schemas: SchemaSet;
  readonly statusMode: StatusMode;
  readonly log: (msg: string) => void;
  /** Called after vmm.shutdown has been answered. */
  readonly onVmmShutdown: () => void;
}

function routes(opts: ApiServerOptions): Map<string, Route> {
  const { vmm, schemas, statusMode } = opts;
  const bodySchema = (path: string): string => {
    const name = schemas.requestSchemaOf(path);
    if (!name) throw new Error(`openapi.yaml documents no request body for ${path}`);
    return name;
  };
  // The real VMM deserialises a VmConfig it reads (a snapshot's, a migration's) with serde: the schema stands in.
  const validateConfig = schemas.validator('VmConfig');
  const configCheck: ConfigCheck = (c) => {
    const check = validateConfig(c);
    return check.ok ? undefined : check.message;
  };
  const put = (run: () => Promise<unknown> | unknown): Route => ({
    method: 'PUT',
    run: async () => {
      await vmm.run(run);
      return noContent;
    },
  });
  const table: [string, Route][] = [
    ['vmm.ping', { method: 'GET', custom: true, run: async () => json(vmm.ping()) }],
    [
      'vmm.shutdown',
      {
        method: 'PUT',
        custom: true,
        run: async () => {
          await vmm.run(() => vmm.shutdownVmm());
          // The handler answers 200 although the document says 204.
          return { status: statusMode === 'documented' ? 204 : 200 };
        },
      },
    ],
    [
      'vm.create',
      {
        method: 'PUT',
        custom: true,
        schema: bodySchema('/vm.create'),
        run: async (b) => {
          // serde fills every field it has a default for; vm.info then reports the complete config.
          const full = schemas.validator('VmConfig')(withRustDefaults(b ?? {})).value;
          await vmm.run(() => vmm.create(isObject(full) ? full : {}));
          return noContent;
        },
      },
    ],
    ['vm.boot', put(() => vmm.boot())],
    ['vm.pause', put(() => vmm.pause())],
    ['vm.resume', put(() => vmm.resume())],
    ['vm.shutdown', put(() => vmm.shutdown())],
    ['vm.reboot', put(() => vmm.reboot())],
    ['vm.delete', put(() => vmm.delete())],
    ['vm.info', { method: 'GET', custom: true, run: async () => json(await vmm.run(() => vmm.info())) }],
    ['vm.counters', { method: 'GET', run: async () => ({ status: 200, body: await vmm.run(() => vmm.counters()) }) }],
    ...(Object.keys(ADD_ENDPOINTS) as AddEndpoint[]).map((name): [string, Route] => [
      name,
      {
        method: 'PUT',
        schema: bodySchema(`/${name}`),
        run: async (b) => {
          const info = await vmm.run(() => vmm.addDevice(name, b ?? {}));
          return info === undefined ? noContent : json(info);
        },
      },
    ]),
    ['vm.remove-device', { method: 'PUT', schema: bodySchema('/vm.remove-device'), run: async (b) => (await vmm.run(() => vmm.removeDevice(String(b?.id))), noContent) }],
    ['vm.resize', { method: 'PUT', schema: bodySchema('/vm.resize'), run: async (b) => (await vmm.run(() => vmm.resize(b ?? {})), noContent) }],
    ['vm.snapshot', { method: 'PUT', schema: bodySchema('/vm.snapshot'), run: async (b) => (await vmm.run(() => vmm.snapshot(String(b?.destination_url))), noContent) }],
    [
      'vm.receive-migration',
      {
        method: 'PUT',
        schema: bodySchema('/vm.receive-migration'),
        // Answered only once the migration is in (or aborted): the control loop runs the whole exchange.
        run: async (b) => (await vmm.run(() => vmm.receiveMigration(b ?? {}, configCheck)), noContent),
      },
    ],
    ['vm.send-migration', { method: 'PUT', schema: bodySchema('/vm.send-migration'), run: async (b) => (await vmm.run(() => vmm.sendMigration(b ?? {})), noContent) }],
    [
      'vm.restore',
      {
        method: 'PUT',
        schema: bodySchema('/vm.restore'),
        run: async (b) => (await vmm.run(() => vmm.restore(b ?? {}, configCheck)), noContent),
      },
    ],
  ];
  return new Map(table.map(([name, route]) => [`${HTTP_ROOT}/${name}`, route]));
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function createApiServer(opts: ApiServerOptions): Server {
  const table = routes(opts);
  const documentedPaths = new Set(Object.keys(opts.schemas.doc.paths).map((p) => `${HTTP_ROOT}${p}`));
  const validators = new Map([...table].filter(([, r]) => r.schema).map(([p, r]) => [p, opts.schemas.validator(r.schema!)]));

  async function handle(req: IncomingMessage): Promise<Reply> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    // micro_http reads a body only through Content-Length; a chunked body is not seen at all.
    const declared = req.headers['content-length'] === undefined ? 0 : Number(req.headers['content-length']);
    const raw = await readBody(req);
    if (declared > PAYLOAD_MAX) {
      return { status: 400, body: parseErrorBody(`Request payload with size ${declared} is larger than the limit of ${PAYLOAD_MAX} allowed by server.`) };
    }
    if (declared > 0 && (req.method === 'GET' || req.method === 'DELETE')) return { status: 400, body: parseErrorBody('Invalid request.') };
    const body = declared > 0 ? raw.subarray(0, declared) : undefined;

    const route = table.get(path);
    if (!route) {
      const chain = documentedPaths.has(path) ? ['Not Found', `${path} is in the real API but not modelled by the cloud-hypervisor contract double`] : ['Not Found'];
      return failure(new ApiFailure(chain, 404));
    }
    if (req.method !== 'GET' && req.method !== 'PUT') return route.custom ? failure(httpError.badRequest()) : { status: 400 };
    if (req.method !== route.method) return failure(httpError.badRequest());

    const validate = validators.get(path);
    if (!validate) {
      if (body) return failure(httpError.badRequest());
      return route.run(undefined);
    }
    // vm.create answers a missing body with a bare 400; the other body routes go through error_response.
    if (!body) return path.endsWith('/vm.create') ? { status: 400 } : failure(httpError.badRequest());
    let parsed: Json;
    try {
      parsed = JSON.parse(body.toString('utf8')) as Json;
    } catch (e) {
      return failure(httpError.deserialize(e instanceof Error ? e.message : String(e)));
    }
    const check = validate(parsed);
    if (!check.ok) return failure(httpError.deserialize(check.message));
    if (!isObject(check.value)) return failure(httpError.deserialize('expected a JSON object'));
    return route.run(check.value);
  }

  function failure(err: ApiFailure): Reply {
    return { status: err.status(opts.statusMode), body: JSON.stringify(err.chain) };
  }

  function send(res: ServerResponse, reply: Reply): void {
    const length = reply.status === 204 ? {} : { 'Content-Length': reply.body === undefined ? 0 : Buffer.byteLength(reply.body) };
    res.writeHead(reply.status, { Server: 'Cloud Hypervisor API', 'Content-Type': 'application/json', ...length });
    res.end(reply.body);
  }

  return createServer((req, res) => {
    handle(req)
      .catch((e: unknown) => (e instanceof ApiFailure ? failure(e) : { status: 500, body: JSON.stringify(['Internal Server Error', String(e)]) }))
      .then((reply) => {
        opts.log(`${req.method ?? '?'} ${req.url ?? '?'} -> ${reply.status}`);
        if (req.url?.endsWith('/vmm.shutdown') === true && reply.status < 300) res.once('finish', () => opts.onVmmShutdown());
        send(res, reply);
      });
  });
}
