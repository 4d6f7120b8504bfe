import * as z from 'zod/mini';
import type { Capabilities } from './capabilities.js';
import { ErrorCode, ErrorData, type ErrorCodeName } from './errors.js';
import type { Json } from './json.js';
import { EVENT_STATUS, LIFECYCLE, VMM_ENDS } from './lifecycle.js';
import { METHOD_NAMES, methodDef, methodSince } from './methods.js';
import { notifications, type NotificationName } from './notifications.js';
import { RULES } from './rules.js';
import { PROTOCOL_VERSIONS } from './version.js';

type JsonObject = { [k: string]: Json };

function schemaOf(schema: z.ZodMiniType, io: 'input' | 'output'): JsonObject {
  const s = z.toJSONSchema(schema, { target: 'draft-7', io, unrepresentable: 'any' }) as JsonObject;
  delete s.$schema;
  return s;
}

/** A schema that uses the document's definitions carries them along, so each descriptor stands alone. */
function standalone(s: Json, defs: Json | undefined): Json {
  return defs !== undefined && JSON.stringify(s).includes('#/definitions/') ? ({ ...(s as JsonObject), definitions: defs } as Json) : s;
}

/**
 * OpenRPC passes by-name params as one content descriptor per top-level property. A union of objects
 * (vm/event's params, one shape per event type) has no one list of properties: its descriptors are every
 * member's properties, required only where every member requires them, and `x-hvplug-params-schema`
 * (on every method) holds the exact schema of the params object, the one to validate against.
 */
function paramDescriptors(js: JsonObject): Json[] {
  const members = (js.oneOf ?? js.anyOf ?? [js]) as JsonObject[];
  const byName = new Map<string, { schemas: Json[]; required: number }>();
  for (const m of members) {
    const req = new Set((m.required ?? []) as string[]);
    for (const [name, p] of Object.entries((m.properties ?? {}) as JsonObject)) {
      const e = byName.get(name) ?? { schemas: [], required: 0 };
      if (!e.schemas.some((x) => JSON.stringify(x) === JSON.stringify(p))) e.schemas.push(p);
      if (req.has(name)) e.required++;
      byName.set(name, e);
    }
  }
  return [...byName].map(([name, e]) => ({
    name,
    required: e.required === members.length,
    schema: standalone(e.schemas.length === 1 ? (e.schemas[0] as Json) : { anyOf: e.schemas }, js.definitions),
  }));
}

/** The data schema of each error that has one, by the error's name: published as components.schemas. */
function errorDataSchemas(): JsonObject {
  return Object.fromEntries(
    (Object.keys(ErrorData) as (keyof typeof ErrorData)[]).map((name) => [`${name}ErrorData`, schemaOf(ErrorData[name], 'output')]),
  );
}

function errorTable(): JsonObject {
  return Object.fromEntries(
    (Object.keys(ErrorCode) as ErrorCodeName[]).map((name) => {
      const schema = Object.hasOwn(ErrorData, name) ? ErrorData[name as keyof typeof ErrorData] : undefined;
      const entry: JsonObject = { code: ErrorCode[name] };
      if (schema) {
        entry.data = { $ref: `#/components/schemas/${name}ErrorData` };
        entry.dataRequired = !schema.safeParse(undefined).success;
      }
      return [name, entry];
    }),
  );
}

/**
 * The language-neutral spec, generated from the method table. Notifications appear as methods without a
 * result, as OpenRPC prescribes, marked `x-hvplug-notification` with the direction they travel. The
 * `x-hvplug-*` fields carry what OpenRPC has no word for: each method's exact params schema, the state
 * machine (`x-hvplug-lifecycle` on each VM-scoped method, `x-hvplug-event-status`), each error's data schema
 * (`x-hvplug-errors`, pointing into components.schemas: OpenRPC's error object admits no extension) and the
 * normative rules (`x-hvplug-rules`).
 */
export function openRpcDocument(extensions: Capabilities['extensions'] = {}): JsonObject {
  const requestMethods: Json[] = METHOD_NAMES.map((name) => {
    const m = methodDef(name);
    const params = schemaOf(m.params, 'input');
    return {
      name,
      summary: m.summary,
      paramStructure: 'by-name',
      params: paramDescriptors(params),
      // What a plugin may answer, which is what the host parses its answer with: a member with a default may be left
      // out, and members beyond the schema are allowed (rule unknown-result-keys).
      result: { name: 'result', schema: schemaOf(m.result, 'input') },
      'x-hvplug-params-schema': params,
      'x-hvplug-scope': m.scope,
      'x-hvplug-gated': m.gated,
      'x-hvplug-timeout-ms': m.timeoutMs,
      'x-hvplug-idempotent': m.idempotent ?? false,
      'x-hvplug-since': methodSince(name),
      ...(m.scope === 'vm' ? { 'x-hvplug-lifecycle': LIFECYCLE[name as keyof typeof LIFECYCLE] as unknown as Json } : {}),
    };
  });
  const notificationMethods: Json[] = (Object.keys(notifications) as NotificationName[]).map((name) => {
    const params = schemaOf(notifications[name].params, 'input');
    return {
      name,
      summary: notifications[name].summary,
      paramStructure: 'by-name',
      params: paramDescriptors(params),
      'x-hvplug-params-schema': params,
      'x-hvplug-notification': true,
      'x-hvplug-direction': notifications[name].direction,
    };
  });
  const extensionMethods: Json[] = Object.entries(extensions).map(([name, ext]) => ({
    name,
    summary: ext.summary ?? name,
    paramStructure: 'by-name',
    params: Object.entries((ext.params.properties ?? {}) as JsonObject).map(([p, s]) => ({ name: p, schema: s })),
    result: { name: 'result', schema: ext.result },
    'x-hvplug-params-schema': ext.params,
  }));
  return {
    openrpc: '1.3.2',
    info: {
      title: 'hvplug plugin protocol',
      version: PROTOCOL_VERSIONS[0] ?? '0.0.0',
      description:
        'JSON-RPC 2.0 over a plugin\'s stdin/stdout with Content-Length framing. The host calls initialize, then initialized; shutdown then exit end the session; the plugin also exits on stdin EOF.',
    },
    methods: [...requestMethods, ...notificationMethods, ...extensionMethods],
    components: {
      schemas: errorDataSchemas(),
      errors: Object.fromEntries(Object.entries(ErrorCode).map(([k, code]) => [k, { code, message: k }])),
    },
    'x-hvplug-errors': errorTable(),
    'x-hvplug-event-status': Object.fromEntries(Object.entries(EVENT_STATUS).map(([type, status]) => [type, status ?? null])),
    'x-hvplug-vmm-ends': Object.fromEntries(Object.entries(VMM_ENDS).map(([how, events]) => [how, [...events]])),
    'x-hvplug-rules': RULES.map((r) => ({ id: r.id, text: r.text })),
  };
}
