import type { Issue } from 'hvplug/protocol';
import { isObject, type Json, type JsonObject } from './json.js';

/**
 * The little of JSON Schema this plugin's own schemas use (type, properties, required,
 * additionalProperties: false, enum, minimum/maximum, minLength/maxLength, items, default), so that the
 * schema the plugin declares at initialize is the very thing its input is checked against.
 * Keywords outside that subset are not enforced: keep declared schemas within it.
 */
type Path = Issue['path'];

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(expected: Json, actual: string): boolean {
  const list = Array.isArray(expected) ? expected : [expected];
  return list.some((t) => t === actual || (t === 'number' && actual === 'integer'));
}

export function validate(schema: JsonObject, value: unknown, path: Path = []): Issue[] {
  const issues: Issue[] = [];
  const fail = (message: string): void => void issues.push({ path, message });
  if (schema.type !== undefined && !typeMatches(schema.type, typeOf(value))) {
    fail(`must be ${Array.isArray(schema.type) ? schema.type.join(' or ') : String(schema.type)}, got ${typeOf(value)}`);
    return issues;
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    fail(`must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}`);
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) fail(`must be >= ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) fail(`must be <= ${schema.maximum}`);
  }
  if (typeof value === 'string') {
    if (typeof schema.minLength === 'number' && value.length < schema.minLength) fail(`must be at least ${schema.minLength} characters`);
    if (typeof schema.maxLength === 'number' && value.length > schema.maxLength) fail(`must be at most ${schema.maxLength} characters`);
  }
  if (Array.isArray(value) && isObject(schema.items)) {
    const items = schema.items as JsonObject;
    value.forEach((v, i) => issues.push(...validate(items, v, [...path, i])));
  }
  if (isObject(value)) {
    const properties = isObject(schema.properties) ? (schema.properties as Record<string, JsonObject>) : {};
    for (const name of Array.isArray(schema.required) ? schema.required : []) {
      if (typeof name === 'string' && !(name in value)) issues.push({ path: [...path, name], message: 'is required' });
    }
    for (const [name, v] of Object.entries(value)) {
      const sub = properties[name];
      if (sub) issues.push(...validate(sub, v, [...path, name]));
      else if (schema.additionalProperties === false) issues.push({ path: [...path, name], message: 'is not a known setting' });
    }
  }
  return issues;
}

/** The object with the schema's top-level defaults filled in where a property is absent. */
export function withDefaults(schema: JsonObject, value: JsonObject): JsonObject {
  const out: JsonObject = { ...value };
  const properties = isObject(schema.properties) ? (schema.properties as Record<string, JsonObject>) : {};
  for (const [name, sub] of Object.entries(properties)) {
    if (!(name in out) && sub.default !== undefined) out[name] = sub.default;
  }
  return out;
}
