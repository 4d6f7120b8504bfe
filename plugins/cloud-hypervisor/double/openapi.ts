// The double's request validation is derived from the vendored OpenAPI document, never restated by
// hand, so a schema change upstream changes what the double accepts without anyone editing code here.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';
import { parse as parseYaml } from 'yaml';
import { isObject, type Json, type JsonObject } from './config.js';

const SCHEMA_ID = 'cloud-hypervisor-openapi.json';

/** OpenAPI 3.0 keywords that JSON Schema draft-07 (ajv's default) does not know and that carry no constraint. */
const OPENAPI_ONLY = new Set(['nullable', 'example', 'discriminator', 'xml', 'externalDocs', 'writeOnly', 'readOnly']);

/**
 * Fields the Rust structs behind these bodies require although the OpenAPI document leaves them
 * optional: serde rejects a body without them with 400, so the double must too. Each entry was read
 * from vmm/src/api/mod.rs at the commit the spec was vendored from (a plain `String`/`u64`, not `Option`).
 */
export const RUST_REQUIRED: Readonly<Record<string, readonly string[]>> = {
  VmSnapshotConfig: ['destination_url'],
  VmCoredumpData: ['destination_url'],
  VmRemoveDevice: ['id'],
  VmResizeDisk: ['id', 'desired_size'],
  VmResizeZone: ['id', 'desired_ram'],
};

/** Integer formats the document uses that ajv-formats lacks; the ranges are the Rust integer types'. */
const INTEGER_FORMATS: Record<string, [number, number]> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 4294967295],
};

const REF_PREFIX = '#/components/schemas/';

/**
 * Converts one OpenAPI 3.0 schema object into JSON Schema draft-07, recursively. `componentDefaults`
 * are the defaults components declare at their root (enums such as CoreSchedulingMode): JSON Schema
 * only applies defaults of properties, so they move onto each property that refers to the component,
 * which is where serde applies them.
 */
export function toJsonSchema(schema: Json, name?: string, componentDefaults: Readonly<Record<string, Json>> = {}): Json {
  const convert = (s: Json): Json => toJsonSchema(s, undefined, componentDefaults);
  if (Array.isArray(schema)) return schema.map(convert);
  if (!isObject(schema)) return schema;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(schema)) {
    if (OPENAPI_ONLY.has(key)) continue;
    if (key === 'default' && name !== undefined) continue;
    if (key === '$ref' && typeof value === 'string') {
      out.$ref = value.replace(REF_PREFIX, `${SCHEMA_ID}#/definitions/`);
    } else if (key === 'properties' && isObject(value)) {
      out.properties = Object.fromEntries(
        Object.entries(value).map(([k, v]) => {
          const converted = convert(v);
          const ref = isObject(v) && typeof v.$ref === 'string' ? v.$ref.replace(REF_PREFIX, '') : undefined;
          const inherited = ref === undefined ? undefined : componentDefaults[ref];
          return [k, inherited !== undefined && isObject(converted) && converted.default === undefined ? { ...converted, default: inherited } : converted];
        }),
      );
    } else if (key === 'exclusiveMinimum' || key === 'exclusiveMaximum') {
      // 3.0 spells these as booleans beside minimum/maximum; draft-07 wants the bound itself.
      if (value === true) out[key] = schema[key === 'exclusiveMinimum' ? 'minimum' : 'maximum'] ?? null;
      else if (typeof value === 'number') out[key] = value;
    } else {
      out[key] = typeof value === 'object' ? convert(value) : value;
    }
  }
  if (out.exclusiveMinimum !== undefined) delete out.minimum;
  if (out.exclusiveMaximum !== undefined) delete out.maximum;
  if (schema.nullable === true) {
    if (typeof out.type === 'string') out.type = [out.type, 'null'];
    if (Array.isArray(out.enum)) out.enum = [...out.enum, null];
    if (typeof out.$ref === 'string') return { anyOf: [{ $ref: out.$ref }, { type: 'null' }] };
  }
  const extra = name ? RUST_REQUIRED[name] : undefined;
  if (extra) {
    const required = Array.isArray(out.required) ? out.required.filter((r): r is string => typeof r === 'string') : [];
    out.required = [...new Set([...required, ...extra])];
  }
  return out;
}

export interface OpenApiDocument {
  readonly paths: Readonly<Record<string, Readonly<Record<string, JsonObject>>>>;
  readonly schemas: Readonly<Record<string, JsonObject>>;
}

/** Where the vendored document lives, next to a bundle in dist/ or beside the sources. */
export function defaultSpecPath(): string {
  const fromEnv = process.env.CH_DOUBLE_OPENAPI;
  if (fromEnv) return fromEnv;
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'openapi.yaml'), join(here, '..', 'spec', 'openapi.yaml')];
  return candidates.find((c) => existsSync(c)) ?? candidates[candidates.length - 1]!;
}

export function loadOpenApi(path: string): OpenApiDocument {
  const doc: Json = parseYaml(readFileSync(path, 'utf8')) as Json;
  if (!isObject(doc) || !isObject(doc.paths) || !isObject(doc.components) || !isObject(doc.components.schemas)) {
    throw new Error(`${path} is not an OpenAPI document with paths and components.schemas`);
  }
  const paths: Record<string, Record<string, JsonObject>> = {};
  for (const [p, ops] of Object.entries(doc.paths)) {
    if (!isObject(ops)) continue;
    paths[p] = Object.fromEntries(Object.entries(ops).filter((e): e is [string, JsonObject] => isObject(e[1])));
  }
  const schemas = Object.fromEntries(Object.entries(doc.components.schemas).filter((e): e is [string, JsonObject] => isObject(e[1])));
  return { paths, schemas };
}

export interface BodyCheck {
  readonly ok: boolean;
  /** The body with the document's defaults filled in, as the VMM stores and reports it. */
  readonly value: Json;
  readonly message: string;
}

export type BodyValidator = (body: Json) => BodyCheck;

function describe(errors: readonly ErrorObject[] | null | undefined): string {
  return (errors ?? []).map((e) => `${e.instancePath || '(body)'} ${e.message ?? 'is invalid'}`).join('; ');
}

/** One compiled validator per component schema, with defaults applied the way serde applies them. */
export class SchemaSet {
  private readonly ajv: Ajv;
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor(readonly doc: OpenApiDocument) {
    // strict mode makes an OpenAPI keyword the converter missed fail loudly instead of being ignored.
    this.ajv = new Ajv({ strict: true, allErrors: true, useDefaults: true });
    // CommonJS interop: the default import is module.exports, the plugin function, which also carries itself as .default.
    ajvFormats.default(this.ajv);
    for (const [fmt, [min, max]] of Object.entries(INTEGER_FORMATS)) {
      this.ajv.addFormat(fmt, { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= min && n <= max });
    }
    const componentDefaults = Object.fromEntries(
      Object.entries(doc.schemas).flatMap(([k, v]): [string, Json][] => (v.default === undefined ? [] : [[k, v.default]])),
    );
    const definitions = Object.fromEntries(Object.entries(doc.schemas).map(([k, v]) => [k, toJsonSchema(v, k, componentDefaults)]));
    this.ajv.addSchema({ $id: SCHEMA_ID, definitions });
  }

  /** The request body schema name of a path's PUT operation, or undefined when it takes no body. */
  requestSchemaOf(path: string): string | undefined {
    const put = this.doc.paths[path]?.put;
    const body = put?.requestBody;
    if (!isObject(body) || !isObject(body.content)) return undefined;
    const json = body.content['application/json'];
    if (!isObject(json) || !isObject(json.schema) || typeof json.schema.$ref !== 'string') return undefined;
    return json.schema.$ref.replace(REF_PREFIX, '');
  }

  validator(schemaName: string): BodyValidator {
    let fn = this.compiled.get(schemaName);
    if (!fn) {
      const found = this.ajv.getSchema(`${SCHEMA_ID}#/definitions/${schemaName}`);
      if (!found) throw new Error(`openapi.yaml has no components.schemas.${schemaName}`);
      fn = found;
      this.compiled.set(schemaName, fn);
    }
    const validate = fn;
    return (body) => {
      const value = structuredClone(body);
      const ok = validate(value);
      return { ok, value, message: ok ? '' : describe(validate.errors) };
    };
  }
}
