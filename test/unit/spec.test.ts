import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import jsonSchemaMetaModule from '@json-schema-tools/meta-schema';
import metaSchemaModule from '@open-rpc/meta-schema';
import { describe, expect, it } from 'vitest';
import { ErrorCode, ErrorData, LIFECYCLE, METHOD_NAMES, methods, notifications, openRpcDocument, RULES, sessionMethod, VmEvent, type SessionRole } from 'hvplug/protocol';

type Obj = Record<string, unknown>;
interface Method {
  name: string;
  params: { name: string; required?: boolean }[];
  result?: { schema: Obj };
  'x-hvplug-params-schema': Obj;
  'x-hvplug-notification'?: boolean;
  'x-hvplug-direction'?: string;
  'x-hvplug-lifecycle'?: Obj;
}
interface Doc {
  methods: Method[];
  components: { schemas: Record<string, Obj>; errors: Record<string, { code: number }> };
  'x-hvplug-errors': Record<string, { code: number; data?: { $ref: string }; dataRequired?: boolean }>;
  'x-hvplug-rules': { id: string; text: string }[];
  'x-hvplug-event-status': Obj;
  'x-hvplug-vmm-ends'?: Record<string, string[]>;
}

const doc = JSON.parse(JSON.stringify(openRpcDocument())) as Doc;
const byName = new Map(doc.methods.map((m) => [m.name, m]));

function metaValidator(): (d: unknown) => boolean {
  const mod = metaSchemaModule as unknown as { openrpcDocument?: Obj };
  const jsMod = jsonSchemaMetaModule as unknown as { jsonSchema?: Obj };
  const jsonMeta = jsMod.jsonSchema ?? (jsMod as Obj);
  const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
  ajv.addSchema(jsonMeta);
  ajv.addSchema({ ...jsonMeta, $id: 'https://meta.json-schema.tools' });
  const v = ajv.compile(mod.openrpcDocument ?? (mod as Obj));
  return (d) => {
    const ok = v(d);
    if (!ok) throw new Error(JSON.stringify(v.errors));
    return ok;
  };
}

/** A validator of the document's own schemas, as a plugin author in another language would use them. */
function schemaValidator(schema: Obj): (value: unknown) => boolean {
  const ajv = new Ajv({ strict: false, allErrors: true });
  // The document's schemas are draft-07; ajv 8 reads them once the $schema is left out.
  const v = ajv.compile({ ...schema, components: doc.components } as Obj);
  return (value) => v(value);
}

/** Message names the host, the shim and the SDK send or accept, read from their source. */
function namesInSource(): { names: Set<string>; codes: Set<number> } {
  const root = join(import.meta.dirname, '../../src');
  const files = ['core/host-rpc.ts', 'core/plugin-client.ts', 'shim/shim.ts', ...readdirSync(join(root, 'plugin-sdk')).map((f) => `plugin-sdk/${f}`)];
  const names = new Set<string>();
  const codes = new Set<number>();
  for (const f of files) {
    const src = readFileSync(join(root, f), 'utf8');
    for (const m of src.matchAll(/(?:sendNotification|onNotification|onRequest|sendRequest|notify)\(\s*'([^']+)'/g)) names.add(m[1] as string);
    for (const m of src.matchAll(/const [A-Z_]+ = '(\$\/[^']+)'/g)) names.add(m[1] as string);
    for (const m of src.matchAll(/method === '([^']+)'/g)) names.add(m[1] as string);
    // Session methods are named by their role in the table.
    for (const m of src.matchAll(/sessionMethod\('([a-z]+)'\)/g)) names.add(sessionMethod(m[1] as SessionRole));
    for (const m of src.matchAll(/const [A-Z_]+ = (-3\d{4});/g)) codes.add(Number(m[1]));
  }
  return { names, codes };
}

describe('hvplug spec: the whole contract in the OpenRPC document', () => {
  it('validates against the OpenRPC meta-schema', () => {
    expect(metaValidator()(doc)).toBe(true);
  });

  it('has every method of the table with its exact params and result schema, and every notification marked with its direction', () => {
    for (const name of METHOD_NAMES) {
      const m = byName.get(name);
      expect(m, name).toBeDefined();
      expect(m?.result, name).toBeDefined();
      expect(m?.['x-hvplug-params-schema'].type, name).toBe('object');
    }
    for (const [name, n] of Object.entries(notifications)) {
      const m = byName.get(name);
      expect(m?.['x-hvplug-notification'], name).toBe(true);
      expect(m?.['x-hvplug-direction'], name).toBe(n.direction);
      expect(m?.params.length, `${name} has params descriptors`).toBeGreaterThan(name === 'initialized' || name === 'exit' ? -1 : 0);
    }
  });

  it('says in which protocol version each method came: 1.0.0, or 1.1.0 for the migration pair, and is itself 1.1.0', () => {
    expect((JSON.parse(JSON.stringify(openRpcDocument())) as { info: { version: string } }).info.version).toBe('1.1.0');
    for (const name of METHOD_NAMES) {
      const since = (byName.get(name) as Method & { 'x-hvplug-since'?: string })['x-hvplug-since'];
      expect(since, name).toBe(name === 'vm/migrate' || name === 'vm/receiveMigration' ? '1.1.0' : '1.0.0');
    }
  });

  it("publishes each result as what the host accepts: a defaulted member may be left out, an unknown one is ignored", () => {
    const samples: [string, Obj][] = [
      ['vm/info', { vmId: 'vm-1', status: 'running', vcpus: 1, memoryMiB: 64, devices: [], vendorKey: 1 }],
      ['vm/stats', { cpuTimeMs: 1, memoryRssBytes: 2, uptimeMs: 3 }],
      ['initialize', { protocolVersion: '1.1.0', plugin: { name: 'p', version: '1', vendor: 'v' }, capabilities: { methods: [] } }],
      ['vm/start', { status: 'running', state: { pid: 1 }, extra: true }],
    ];
    for (const [name, result] of samples) {
      expect(methods[name as keyof typeof methods].result.safeParse(result).success, `the host accepts ${name}`).toBe(true);
      expect(schemaValidator(byName.get(name)?.result?.schema as Obj)(result), `the published ${name} result accepts it`).toBe(true);
    }
  });

  it('publishes vm/event with every event type the host parses, each with its own required fields', () => {
    const event = byName.get('vm/event');
    expect(event?.params.filter((p) => p.required).map((p) => p.name).sort()).toEqual(['seq', 'time', 'type', 'vmId']);
    const valid = schemaValidator(event?.['x-hvplug-params-schema'] as Obj);
    const base = { vmId: 'vm-1', seq: 0, time: '2024-01-01T00:00:00.000Z' };
    const samples: Obj[] = [
      { type: 'created' }, { type: 'running' }, { type: 'paused' }, { type: 'resumed' }, { type: 'stopped' },
      { type: 'exited', code: 0, signal: null, reason: 'guest powered off' },
      { type: 'crashed', reason: 'killed' }, { type: 'device-added', deviceId: 'd1' }, { type: 'device-removed', deviceId: 'd1' },
      { type: 'state', state: { any: 1 } }, { type: 'lost', reason: 'gone' }, { type: 'recovered' },
    ];
    const types = VmEvent.def.options.map((o) => o.shape.type.def.values[0]);
    expect(samples.map((s) => s.type).sort()).toEqual([...types].sort());
    for (const s of samples) {
      expect(VmEvent.safeParse({ ...base, ...s }).success, String(s.type)).toBe(true);
      expect(valid({ ...base, ...s }), `the published schema accepts ${String(s.type)}`).toBe(true);
    }
    // What the host drops, the published schema refuses too: the stranger's exited without code and signal.
    for (const bad of [{ type: 'exited', reason: 'x' }, { type: 'crashed' }, { type: 'device-added' }, { type: 'nonsense' }]) {
      expect(VmEvent.safeParse({ ...base, ...bad }).success).toBe(false);
      expect(valid({ ...base, ...bad }), JSON.stringify(bad)).toBe(false);
    }
    expect(Object.keys(doc['x-hvplug-event-status']).sort()).toEqual([...types].sort());
    // The form of time the conformance suite requires (RFC 3339), published rather than left to a string.
    const time = (event?.params.find((p) => p.name === 'time') as { schema?: Obj } | undefined)?.schema;
    expect(time).toMatchObject({ type: 'string', format: 'date-time' });
  });

  it('has every error code, with the data schema of each that carries data', () => {
    for (const [name, code] of Object.entries(ErrorCode)) {
      expect(doc.components.errors[name]?.code, name).toBe(code);
      expect(doc['x-hvplug-errors'][name]?.code, name).toBe(code);
    }
    for (const name of Object.keys(ErrorData)) {
      const ref = doc['x-hvplug-errors'][name]?.data?.$ref;
      expect(ref, name).toBe(`#/components/schemas/${name}ErrorData`);
      expect(doc.components.schemas[`${name}ErrorData`], name).toBeDefined();
    }
    const invalidState = schemaValidator(doc.components.schemas.InvalidStateErrorData as Obj);
    expect(invalidState({ vmId: 'v', current: 'created', required: ['running'] })).toBe(true);
    expect(invalidState({ vmId: 'v', current: 'created', required: 'running' })).toBe(false);
    const invalidParams = schemaValidator(doc.components.schemas.InvalidParamsErrorData as Obj);
    expect(invalidParams({ method: 'vm/create', issues: [{ path: ['config', 'devices', 0], message: 'm' }] })).toBe(true);
    expect(invalidParams({ method: 'vm/create', issues: [{ path: 'config.devices.0', message: 'm' }] })).toBe(false);
    expect(doc['x-hvplug-errors'].Cancelled?.dataRequired).toBe(false);
    expect(doc['x-hvplug-errors'].InvalidState?.dataRequired).toBe(true);
  });

  it('has every message the host, the shim and the SDK send or accept, and every error code the host answers with', () => {
    const { names, codes } = namesInSource();
    // The walk finds what it must: a walk that finds nothing proves nothing.
    for (const known of ['$/cancelRequest', 'vm/event', '$/progress', 'initialized', 'exit', 'initialize', 'health/ping']) expect(names, known).toContain(known);
    for (const n of names) expect(byName.has(n), `${n} is sent or accepted but not in the document`).toBe(true);
    expect(codes.size).toBeGreaterThan(0);
    const published = new Set(Object.values(doc.components.errors).map((e) => e.code));
    for (const c of codes) expect(published.has(c), `error code ${c}`).toBe(true);
  });

  it('carries the state machine on every VM-scoped method, and the normative rules', () => {
    for (const name of Object.keys(LIFECYCLE)) expect(byName.get(name)?.['x-hvplug-lifecycle'], name).toEqual(JSON.parse(JSON.stringify(LIFECYCLE[name as keyof typeof LIFECYCLE])));
    expect(doc['x-hvplug-rules'].map((r) => r.id)).toEqual(RULES.map((r) => r.id));
  });

  it('says what a VMM that ends outside any call must send: a killed one exited then crashed', () => {
    expect(doc['x-hvplug-vmm-ends']).toEqual({ 'guest-poweroff': ['exited'], killed: ['exited', 'crashed'] });
  });
});
