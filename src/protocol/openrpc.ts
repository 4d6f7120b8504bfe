// A namespace import lets esbuild keep only the zod a plugin uses (`import { z }` pulls in all of it, locales too).
import * as z from 'zod';
import type { Capabilities } from './capabilities.js';
import { ErrorCode } from './errors.js';
import type { Json } from './json.js';
import { METHOD_NAMES, methodDef } from './methods.js';
import { notifications, type NotificationName } from './notifications.js';
import { PROTOCOL_VERSIONS } from './version.js';

type JsonObject = { [k: string]: Json };

function schemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonObject {
  const s = z.toJSONSchema(schema, { target: 'draft-7', io, unrepresentable: 'any' }) as JsonObject;
  delete s.$schema;
  return s;
}

/** OpenRPC passes by-name params as one content descriptor per top-level property. */
function paramDescriptors(schema: z.ZodType): Json[] {
  const js = schemaOf(schema, 'input');
  const props = (js.properties ?? {}) as JsonObject;
  const required = new Set((js.required ?? []) as string[]);
  const defs = js.definitions;
  return Object.entries(props).map(([name, s]) => ({
    name,
    required: required.has(name),
    schema: defs !== undefined && JSON.stringify(s).includes('#/definitions/') ? ({ ...(s as JsonObject), definitions: defs } as Json) : s,
  }));
}

/**
 * The language-neutral spec, generated from the method table. Notifications appear as methods without
 * a result, as OpenRPC prescribes; `x-hvplug-*` fields carry what OpenRPC has no word for.
 */
export function openRpcDocument(extensions: Capabilities['extensions'] = {}): JsonObject {
  const requestMethods: Json[] = METHOD_NAMES.map((name) => {
    const m = methodDef(name);
    return {
      name,
      summary: m.summary,
      paramStructure: 'by-name',
      params: paramDescriptors(m.params),
      result: { name: 'result', schema: schemaOf(m.result, 'output') },
      'x-hvplug-scope': m.scope,
      'x-hvplug-gated': m.gated,
      'x-hvplug-timeout-ms': m.timeoutMs,
      'x-hvplug-idempotent': m.idempotent ?? false,
    };
  });
  const notificationMethods: Json[] = (Object.keys(notifications) as NotificationName[]).map((name) => ({
    name,
    summary: notifications[name].summary,
    paramStructure: 'by-name',
    params: paramDescriptors(notifications[name].params),
    'x-hvplug-direction': notifications[name].direction,
  }));
  const extensionMethods: Json[] = Object.entries(extensions).map(([name, ext]) => ({
    name,
    summary: ext.summary ?? name,
    paramStructure: 'by-name',
    params: Object.entries((ext.params.properties ?? {}) as JsonObject).map(([p, s]) => ({ name: p, schema: s })),
    result: { name: 'result', schema: ext.result },
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
      errors: Object.fromEntries(Object.entries(ErrorCode).map(([k, code]) => [k, { code, message: k }])),
    },
  };
}
