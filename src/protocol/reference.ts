import { ErrorCode, ErrorData, type ErrorCodeName } from './errors.js';
import { EVENT_STATUS, LIFECYCLE, VM_METHODS, VMM_ENDS, type Transition } from './lifecycle.js';
import { METHOD_NAMES, methodDef } from './methods.js';
import { notifications, type NotificationName } from './notifications.js';
import { openRpcDocument } from './openrpc.js';
import { RULES } from './rules.js';
import { VM_STATUSES } from './vm.js';

/** The markers between which docs/plugin-authors.md holds the generated reference (see scripts/gen-docs.mjs). */
export const REFERENCE_BEGIN = '<!-- BEGIN GENERATED REFERENCE (npm run build:ts && node scripts/gen-docs.mjs; do not edit by hand) -->';
export const REFERENCE_END = '<!-- END GENERATED REFERENCE -->';

type Obj = Record<string, unknown>;

const code = (s: string): string => `\`${s.replace(/\|/g, '\\|')}\``;

/** A one-line reading of a JSON Schema: enough to scan a table; the OpenRPC document has the whole. */
function brief(schema: unknown, depth = 0): string {
  if (typeof schema !== 'object' || schema === null) return 'any';
  const s = schema as Obj;
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return s.enum.map((e) => JSON.stringify(e)).join(' \\| ');
  const union = (s.anyOf ?? s.oneOf) as unknown[] | undefined;
  if (union) return union.map((u) => brief(u, depth)).join(' \\| ');
  if (s.$ref) return String(s.$ref).split('/').at(-1) ?? 'object';
  if (s.type === 'array') return `${brief(s.items, depth)}[]`;
  if (s.type === 'object' || s.properties) {
    const props = (s.properties ?? {}) as Obj;
    const keys = Object.keys(props);
    if (keys.length === 0) return s.additionalProperties ? 'object' : '{}';
    if (depth > 0) return 'object';
    const req = new Set((s.required ?? []) as string[]);
    return `{${keys.map((k) => `${k}${req.has(k) ? '' : '?'}: ${brief(props[k], depth + 1)}`).join(', ')}}`;
  }
  return Array.isArray(s.type) ? s.type.join(' \\| ') : String(s.type ?? 'any');
}

function cell(t: Transition): string {
  if (t.verdict === 'forbidden') return 'InvalidState';
  const to = t.to.join('/');
  const events = t.events.length ? ` [${t.events.join(', ')}]` : '';
  return `${t.verdict === 'may' ? '(may) ' : ''}→ ${to}${events}${t.waits ? ' (waits)' : ''}`;
}

/** The reference part of the plugin author's guide, generated from the method table and the state machine. */
export function renderReference(): string {
  const doc = openRpcDocument() as { methods: Obj[] };
  const spec = new Map(doc.methods.map((m) => [m.name as string, m]));
  const out: string[] = [REFERENCE_BEGIN, ''];

  out.push('### Normative rules', '');
  for (const r of RULES) out.push(`- **${r.id}**: ${r.text}`);

  out.push('', '### Methods', '', '| method | scope | gated | timeout | params | result |', '|---|---|---|---|---|---|');
  for (const name of METHOD_NAMES) {
    const m = methodDef(name);
    const s = spec.get(name) as Obj;
    const result = (s.result as Obj).schema;
    out.push(
      `| ${code(name)} | ${m.scope} | ${m.gated ? 'yes' : 'no'} | ${m.timeoutMs === null ? 'none' : `${m.timeoutMs} ms`} | ${brief(s['x-hvplug-params-schema'])} | ${brief(result)} |`,
    );
  }

  out.push('', '### Notifications', '', '| notification | direction | params |', '|---|---|---|');
  for (const name of Object.keys(notifications) as NotificationName[]) {
    const s = spec.get(name) as Obj;
    const params = s['x-hvplug-params-schema'] as Obj;
    const members = (params.oneOf ?? params.anyOf) as Obj[] | undefined;
    out.push(`| ${code(name)} | ${notifications[name].direction} | ${members ? 'one of the event types below' : brief(params)} |`);
  }
  out.push('', '`vm/event` types (every event also carries `vmId`, `seq`, `time`):', '', '| type | fields | status after |', '|---|---|---|');
  const event = (spec.get('vm/event') as Obj)['x-hvplug-params-schema'] as Obj;
  for (const member of (event.oneOf ?? event.anyOf) as Obj[]) {
    const props = member.properties as Obj;
    const type = (props.type as Obj).const as keyof typeof EVENT_STATUS;
    const fields = Object.fromEntries(Object.entries(props).filter(([k]) => !['vmId', 'seq', 'time', 'type'].includes(k)));
    const shown = Object.keys(fields).length ? brief({ type: 'object', properties: fields, required: member.required }) : '';
    out.push(`| ${code(String(type))} | ${shown} | ${EVENT_STATUS[type] ?? ''} |`);
  }

  out.push('', '### Errors', '', '| error | code | data |', '|---|---|---|');
  for (const name of Object.keys(ErrorCode) as ErrorCodeName[]) {
    const schema = Object.hasOwn(ErrorData, name) ? ErrorData[name as keyof typeof ErrorData] : undefined;
    const data = schema ? `${brief((openRpcDocument().components as Obj & { schemas: Obj }).schemas[`${name}ErrorData`])}${schema.safeParse(undefined).success ? ' (may be absent)' : ''}` : '';
    out.push(`| ${name} | ${ErrorCode[name]} | ${data} |`);
  }

  out.push(
    '',
    '### The VM state machine',
    '',
    'A cell: `InvalidState` (forbidden: the plugin MUST refuse with InvalidState and change nothing), or `→` the status(es) a successful',
    'call leaves, then [the lifecycle events it emits, in order]; `(may)`: the plugin may also refuse with InvalidState.',
    '',
    `| method | ${VM_STATUSES.join(' | ')} |`,
    `|---|${VM_STATUSES.map(() => '---').join('|')}|`,
  );
  for (const m of VM_METHODS) out.push(`| ${code(m)} | ${VM_STATUSES.map((s) => cell(LIFECYCLE[m][s])).join(' | ')} |`);
  out.push('', 'A VMM that ends outside any call (`x-hvplug-vmm-ends`): the events the plugin MUST send, in order, and the status they leave.', '', '| how it ended | events | status after |', '|---|---|---|');
  for (const [how, events] of Object.entries(VMM_ENDS)) {
    out.push(`| ${how} | ${events.map(code).join(', ')} | ${EVENT_STATUS[events.at(-1) ?? 'exited'] ?? ''} |`);
  }
  out.push('', REFERENCE_END);
  return out.join('\n');
}

/** The guide with its reference part replaced by a fresh one; throws if the markers are missing. */
export function withReference(guide: string): string {
  const begin = guide.indexOf(REFERENCE_BEGIN);
  const end = guide.indexOf(REFERENCE_END);
  if (begin < 0 || end < begin) throw new Error('the guide has no generated reference markers');
  return guide.slice(0, begin) + renderReference() + guide.slice(end + REFERENCE_END.length);
}
