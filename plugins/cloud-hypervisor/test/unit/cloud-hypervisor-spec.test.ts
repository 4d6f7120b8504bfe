// The vendored OpenAPI document, the double's conversion of it to JSON Schema, and the client's zod
// schemas checked against it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as z from 'zod/mini';
import { root } from '../../../../scripts/bundle.mjs';
import { COMPONENTS } from '../../src/api-types.js';
import { loadOpenApi, RUST_REQUIRED, SchemaSet, toJsonSchema } from '../../double/openapi.js';

const specDir = join(root, 'plugins/cloud-hypervisor/spec');
const shared = join(root, '..', 'shared', 'specs', 'cloud-hypervisor');
const doc = loadOpenApi(join(specDir, 'openapi.yaml'));
const schemas = new SchemaSet(doc);

describe('vendored Cloud Hypervisor spec', () => {
  it('ships the Apache-2.0 license and provenance next to the data', () => {
    for (const f of ['openapi.yaml', 'api.md', 'LICENSE-Apache-2.0.txt', 'README.md']) expect(existsSync(join(specDir, f)), f).toBe(true);
    expect(readFileSync(join(specDir, 'LICENSE-Apache-2.0.txt'), 'utf8')).toContain('Apache License');
  });

  it.skipIf(!existsSync(shared))('is byte-identical to ../shared/specs/cloud-hypervisor', () => {
    for (const f of ['openapi.yaml', 'api.md', 'LICENSE-Apache-2.0.txt']) {
      expect(readFileSync(join(specDir, f)).equals(readFileSync(join(shared, f))), f).toBe(true);
    }
  });
});

describe('OpenAPI 3.0 to JSON Schema', () => {
  it('turns nullable into a null type, rewrites component $refs and boolean exclusive bounds', () => {
    expect(toJsonSchema({ type: 'string', nullable: true })).toEqual({ type: ['string', 'null'] });
    expect(toJsonSchema({ type: 'string', enum: ['a'], nullable: true })).toEqual({ type: ['string', 'null'], enum: ['a', null] });
    expect(toJsonSchema({ $ref: '#/components/schemas/X', nullable: true })).toEqual({
      anyOf: [{ $ref: 'cloud-hypervisor-openapi.json#/definitions/X' }, { type: 'null' }],
    });
    expect(toJsonSchema({ type: 'integer', minimum: 3, exclusiveMinimum: true })).toEqual({ type: 'integer', exclusiveMinimum: 3 });
    expect(toJsonSchema({ type: 'object', example: { a: 1 }, properties: { a: { type: 'integer', example: 1 } } })).toEqual({
      type: 'object',
      properties: { a: { type: 'integer' } },
    });
  });

  it('adds the fields the Rust structs require although the document does not', () => {
    expect(toJsonSchema({ type: 'object', properties: { id: { type: 'string' } } }, 'VmRemoveDevice')).toMatchObject({ required: ['id'] });
    expect(Object.keys(RUST_REQUIRED).every((k) => k in doc.schemas)).toBe(true);
  });

  it('compiles every component in strict mode and enforces types, minimums, formats and required fields', () => {
    for (const name of Object.keys(doc.schemas)) expect(() => schemas.validator(name), name).not.toThrow();
    const vm = schemas.validator('VmConfig');
    expect(vm({ payload: { kernel: '/k' } }).ok).toBe(true);
    expect(vm({ payload: { kernel: '/k' }, cpus: { boot_vcpus: '2', max_vcpus: 2 } }).message).toContain('/cpus/boot_vcpus must be integer');
    expect(vm({ payload: { kernel: '/k' }, cpus: { boot_vcpus: 0, max_vcpus: 2 } }).ok).toBe(false);
    expect(vm({ cpus: { boot_vcpus: 1, max_vcpus: 1 } }).message).toContain("required property 'payload'");
    // pci_segment is format int16, pci_device_id uint8: out-of-range values are rejected as serde rejects them.
    expect(vm({ payload: {}, disks: [{ path: '/d', pci_device_id: 256 }] }).ok).toBe(false);
    expect(vm({ payload: {}, disks: [{ path: '/d', pci_segment: 40000 }] }).ok).toBe(false);
    expect(schemas.validator('VsockConfig')({ cid: 2, socket: '/s' }).ok).toBe(false);
    expect(schemas.validator('VmSnapshotConfig')({}).ok).toBe(false);
    // Unknown properties pass: neither the document nor serde (no deny_unknown_fields) forbids them.
    expect(vm({ payload: {}, some_future_field: 1 }).ok).toBe(true);
  });

  it('fills the documented defaults into an accepted body, including those of referenced enums', () => {
    const r = schemas.validator('DiskConfig')({ path: '/d' });
    expect(r.value).toMatchObject({ path: '/d', readonly: false, num_queues: 1, queue_size: 128, lock_granularity: 'ByteRange' });
    expect(schemas.validator('CpusConfig')({ boot_vcpus: 1, max_vcpus: 1 }).value).toMatchObject({ core_scheduling: 'Vm' });
    expect(toJsonSchema({ enum: ['A'], default: 'A' }, 'Mode')).toEqual({ enum: ['A'] });
  });

  it('finds the request body schema of each body-taking endpoint the plugin uses', () => {
    expect(schemas.requestSchemaOf('/vm.create')).toBe('VmConfig');
    expect(schemas.requestSchemaOf('/vm.add-device')).toBe('DeviceConfig');
    expect(schemas.requestSchemaOf('/vm.add-vsock')).toBe('VsockConfig');
    expect(schemas.requestSchemaOf('/vm.restore')).toBe('RestoreConfig');
    expect(schemas.requestSchemaOf('/vm.receive-migration')).toBe('ReceiveMigrationData');
    expect(schemas.requestSchemaOf('/vm.send-migration')).toBe('SendMigrationData');
    expect(schemas.requestSchemaOf('/vm.boot')).toBeUndefined();
  });
});

type JsonSchema = { type?: string | string[]; properties?: Record<string, JsonSchema>; required?: string[]; enum?: unknown[]; $ref?: string; items?: JsonSchema; additionalProperties?: JsonSchema | boolean };

function resolve(s: JsonSchema): JsonSchema {
  if (s.$ref) return resolve(doc.schemas[s.$ref.replace('#/components/schemas/', '')] as JsonSchema);
  return s;
}

/** The zod schema's JSON Schema compared with the component: same properties, compatible types, same enums and required set. */
function drift(name: string, zodSchema: z.core.$ZodType): string[] {
  const problems: string[] = [];
  const mine = z.toJSONSchema(zodSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const theirs = resolve(doc.schemas[name] as JsonSchema);
  const typeOf = (s: JsonSchema): string | undefined => {
    const r = resolve(s);
    return typeof r.type === 'string' ? r.type : r.properties || r.additionalProperties ? 'object' : undefined;
  };
  const compatible = (a: string | undefined, b: string | undefined): boolean => a === b || (b === 'integer' && a === 'number');
  if (!compatible(typeOf(mine), typeOf(theirs))) problems.push(`${name}: type ${String(typeOf(mine))} vs ${String(typeOf(theirs))}`);
  if (theirs.enum) {
    if (JSON.stringify(mine.enum) !== JSON.stringify(theirs.enum)) problems.push(`${name}: enum ${JSON.stringify(mine.enum)} vs ${JSON.stringify(theirs.enum)}`);
  }
  for (const [prop, s] of Object.entries(mine.properties ?? {})) {
    const other = theirs.properties?.[prop];
    if (!other) {
      problems.push(`${name}.${prop} is not in the document`);
      continue;
    }
    const otherResolved = resolve(other);
    if (!compatible(typeOf(s), typeOf(otherResolved))) problems.push(`${name}.${prop}: type ${String(typeOf(s))} vs ${String(typeOf(otherResolved))}`);
    if (otherResolved.enum && JSON.stringify(s.enum) !== JSON.stringify(otherResolved.enum)) problems.push(`${name}.${prop}: enum differs`);
    if (s.type === 'array' && s.items && other.items && !compatible(typeOf(s.items), typeOf(other.items))) problems.push(`${name}.${prop}[]: item type differs`);
  }
  const required = new Set([...(theirs.required ?? []), ...(RUST_REQUIRED[name] ?? [])]);
  const mineRequired = new Set(mine.required ?? []);
  for (const r of required) if (!mineRequired.has(r)) problems.push(`${name}.${r} is required by the document but optional here`);
  for (const r of mineRequired) if (!required.has(r)) problems.push(`${name}.${r} is required here but optional in the document`);
  return problems;
}

describe("the client's zod schemas against openapi.yaml", () => {
  it('model only documented components', () => {
    expect(Object.keys(COMPONENTS).filter((n) => !(n in doc.schemas))).toEqual([]);
  });

  for (const [name, schema] of Object.entries(COMPONENTS)) {
    it(`${name} matches the document`, () => {
      expect(drift(name, schema)).toEqual([]);
    });
  }

  it('the drift check does catch a wrong schema', () => {
    expect(drift('VsockConfig', z.object({ cid: z.string(), socket: z.optional(z.string()), bogus: z.int() }))).toEqual([
      'VsockConfig.cid: type string vs integer',
      'VsockConfig.bogus is not in the document',
      'VsockConfig.socket is required by the document but optional here',
      'VsockConfig.bogus is required here but optional in the document',
    ]);
  });
});
