import { Ajv } from 'ajv';
import jsonSchemaMetaModule from '@json-schema-tools/meta-schema';
import metaSchemaModule from '@open-rpc/meta-schema';
import { describe, expect, it } from 'vitest';
import {
  capabilityRefusal,
  Capabilities,
  ErrorCode,
  GATED_METHODS,
  isJsonValue,
  METHOD_NAMES,
  methods,
  negotiateVersion,
  notifications,
  openRpcDocument,
  PluginState,
  VmConfig,
} from 'hvplug/protocol';
import { encodeFrame, FrameDecoder, FramingError } from 'hvplug/transport';

describe('OpenRPC document', () => {
  const doc = openRpcDocument({ 'x-acme/frob': { summary: 'frob', params: { type: 'object', properties: { level: { type: 'number' } } }, result: {} } });

  it('is valid against the OpenRPC meta-schema', () => {
    // CommonJS interop differs between runners: the default import is the schema or the module object.
    const mod = metaSchemaModule as unknown as { openrpcDocument?: Record<string, unknown> };
    const meta = mod.openrpcDocument ?? (mod as Record<string, unknown>);
    const jsMod = jsonSchemaMetaModule as unknown as { jsonSchema?: Record<string, unknown> };
    const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
    // The OpenRPC meta-schema refers to this JSON Schema meta-schema for every schema in a document.
    // It is referenced both with and without the trailing slash of its $id.
    const jsonMeta = jsMod.jsonSchema ?? (jsMod as Record<string, unknown>);
    ajv.addSchema(jsonMeta);
    ajv.addSchema({ ...jsonMeta, $id: 'https://meta.json-schema.tools' });
    const validate = ajv.compile(meta);
    const ok = validate(doc);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
    // The validator does reject a broken document (a method without params).
    const broken = { ...doc, methods: [{ name: 'vm/create', result: { name: 'r', schema: {} } }] };
    expect(validate(broken)).toBe(false);
  });

  it('lists every method of the table, every notification, and declared extensions', () => {
    const names = (doc.methods as { name: string }[]).map((m) => m.name);
    for (const m of METHOD_NAMES) expect(names).toContain(m);
    for (const n of Object.keys(notifications)) expect(names).toContain(n);
    expect(names).toContain('x-acme/frob');
  });

  it('every param and result schema compiles as JSON Schema', () => {
    const ajv = new Ajv({ strict: false });
    for (const m of doc.methods as { name: string; params: { schema: object }[]; result?: { schema: object } }[]) {
      for (const p of m.params) expect(() => ajv.compile(p.schema), `${m.name} params`).not.toThrow();
      if (m.result) expect(() => ajv.compile(m.result!.schema), `${m.name} result`).not.toThrow();
    }
  });

  it('the generated params schema agrees with zod on a real config', () => {
    const ajv = new Ajv({ strict: false });
    const create = (doc.methods as { name: string; params: { name: string; schema: object }[] }[]).find((m) => m.name === 'vm/create')!;
    const configSchema = create.params.find((p) => p.name === 'config')!.schema;
    const validate = ajv.compile(configSchema);
    const good = { kernel: { path: '/boot/vmlinuz' }, devices: [{ type: 'block', id: 'd0', path: '/img.raw' }] };
    const bad = { devices: [{ type: 'block', id: 'd0', path: 'relative.raw' }] };
    expect(validate(good)).toBe(VmConfig.safeParse(good).success);
    expect(validate(bad)).toBe(VmConfig.safeParse(bad).success);
    expect(validate(bad)).toBe(false);
  });
});

describe('method table', () => {
  it('gives every method a schema pair, a scope and an api name unique within its object', () => {
    const seen = new Set<string>();
    for (const name of METHOD_NAMES) {
      const m = methods[name];
      const owner = m.scope === 'vm' ? 'vm' : 'hv';
      const key = `${owner}.${m.api}`;
      expect(seen.has(key), key).toBe(false);
      seen.add(key);
      expect(m.timeoutMs === null || m.timeoutMs > 0).toBe(true);
      if (m.scope === 'vm' || m.scope === 'new-vm') expect(Object.keys(m.params.shape)).toContain('vmId');
    }
  });

  it('keeps application error codes out of the JSON-RPC reserved range', () => {
    const app = Object.entries(ErrorCode).filter(([, c]) => c > -32000 || c < -32768);
    expect(app.length).toBeGreaterThanOrEqual(9);
    for (const [, code] of app) expect(code < -32768 || code > -32000).toBe(true);
    expect(new Set(Object.values(ErrorCode)).size).toBe(Object.values(ErrorCode).length);
  });
});

describe('version negotiation', () => {
  it('picks the highest common major and the lower newest minor in it', () => {
    expect(negotiateVersion(['1.0.0', '1.2.0'], ['1.1.0'])).toBe('1.1.0');
    expect(negotiateVersion(['2.0.0', '1.4.0'], ['1.2.0', '2.1.0'])).toBe('2.0.0');
    expect(negotiateVersion(['1.0.0'], ['2.0.0'])).toBeUndefined();
    expect(negotiateVersion(['1.0.0'], ['not-a-version'])).toBeUndefined();
  });
});

describe('framing', () => {
  it('decodes messages split and merged across chunks', () => {
    const a = encodeFrame(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'é' }));
    const b = encodeFrame(JSON.stringify({ jsonrpc: '2.0', id: 2, result: {} }));
    const all = Buffer.concat([a, b]);
    const d = new FrameDecoder();
    const out: string[] = [];
    for (let i = 0; i < all.length; i += 7) out.push(...d.push(all.subarray(i, i + 7)).map((x) => x.toString()));
    expect(out.map((s) => JSON.parse(s).id)).toEqual([1, 2]);
    expect(JSON.parse(out[0]!).method).toBe('é');
  });

  it('names the first bytes of non-protocol output', () => {
    const d = new FrameDecoder();
    expect(() => d.push(Buffer.from('Hello, world\n'))).toThrow(/expected a Content-Length header, got "Hello, world\\n"/);
  });

  it('refuses an over-size message from its header alone', () => {
    const d = new FrameDecoder(1000);
    const err = (() => {
      try {
        d.push(Buffer.from('Content-Length: 1001\r\n\r\n'));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(FramingError);
    expect((err as Error).message).toBe('message of 1001 bytes exceeds the limit of 1000 bytes');
    expect(() => encodeFrame('x'.repeat(1001), 1000)).toThrow(/exceeds the limit/);
  });
});

describe('capability gate', () => {
  const caps = Capabilities.parse({
    methods: ['vm/create', 'device/add', 'device/remove'],
    devices: { block: { coldplug: true, hotplug: true, hotunplug: false }, net: { coldplug: true, hotplug: false, hotunplug: false } },
    machines: { microvm: { hotplug: false } },
  });

  it('refuses what is not advertised and allows what is', () => {
    expect(capabilityRefusal('vm/pause', caps)).toMatch(/does not advertise vm\/pause/);
    expect(capabilityRefusal('vm/create', caps)).toBeUndefined();
    expect(capabilityRefusal('health/ping', caps)).toBeUndefined();
    expect(GATED_METHODS).not.toContain('initialize');
  });

  it('decides cold versus hot plug from the VM status and machine', () => {
    expect(capabilityRefusal('device/add', caps, { vmStatus: 'created', deviceType: 'net' })).toBeUndefined();
    expect(capabilityRefusal('device/add', caps, { vmStatus: 'running', deviceType: 'net' })).toMatch(/hot-plug net/);
    expect(capabilityRefusal('device/add', caps, { vmStatus: 'running', deviceType: 'block' })).toBeUndefined();
    expect(capabilityRefusal('device/add', caps, { vmStatus: 'running', deviceType: 'block', machine: 'microvm' })).toMatch(/no hotplug/);
    expect(capabilityRefusal('device/remove', caps, { vmStatus: 'running', deviceType: 'block' })).toMatch(/hot-unplug/);
    expect(capabilityRefusal('device/add', caps, { deviceType: 'vsock' })).toMatch(/vsock/);
    expect(capabilityRefusal('vm/create', caps, { coldDevices: ['block', 'rng'] })).toMatch(/rng/);
  });

  it('refuses net backends the plugin does not declare, and takes every backend when it declares none', () => {
    expect(caps.netBackends).toEqual(['user', 'tap', 'vhost-user']);
    const tapOnly = Capabilities.parse({ ...caps, netBackends: ['tap'] });
    const add = { vmStatus: 'created', deviceType: 'net' } as const;
    expect(capabilityRefusal('device/add', tapOnly, { ...add, netBackends: ['tap'] })).toBeUndefined();
    expect(capabilityRefusal('device/add', tapOnly, { ...add, netBackends: ['user'] })).toBe('the plugin has no user net backend (it has tap)');
    expect(capabilityRefusal('vm/create', tapOnly, { coldDevices: ['net', 'net'], netBackends: ['tap', 'vhost-user'] })).toMatch(/no vhost-user net backend/);
    expect(() => Capabilities.parse({ ...caps, netBackends: ['slirp'] })).toThrow(/netBackends/);
  });
});

describe('JSON values (plugin state, config.plugin, schemas)', () => {
  it('accepts JSON and passes it through unchanged', () => {
    const state = { dir: '/run/x', n: 1.5, ok: true, none: null, list: [1, 'a', { deep: [[{}]] }] };
    const parsed = PluginState.parse(state);
    expect(parsed).toEqual(state);
    expect(isJsonValue(Object.create(null))).toBe(true);
  });

  it('refuses what JSON cannot carry, saying where', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    for (const bad of [undefined, Number.NaN, Infinity, () => 1, new Date(0), new Map(), cyclic, { nested: [1, { x: undefined }] }]) {
      expect(isJsonValue(bad), String(bad)).toBe(false);
    }
    const r = VmConfig.safeParse({ plugin: { tickMs: Number.NaN } });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]).toMatchObject({ path: ['plugin', 'tickMs'], message: expect.stringMatching(/must be a JSON value/) });
  });
});
