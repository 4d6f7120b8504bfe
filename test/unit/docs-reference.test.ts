import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LIFECYCLE, METHOD_NAMES, notifications, RULES } from 'hvplug/protocol';
import { renderReference, withReference } from '../../src/protocol/reference.js';

const guide = readFileSync(join(import.meta.dirname, '../../docs/plugin-authors.md'), 'utf8');

describe('docs/plugin-authors.md: the generated reference', () => {
  it('is exactly what the generator writes (run npm run build:ts && node scripts/gen-docs.mjs after changing the protocol)', () => {
    expect(withReference(guide)).toBe(guide);
  });

  it('names every method, notification, rule and VM-scoped row of the state machine', () => {
    const ref = renderReference();
    for (const m of METHOD_NAMES) expect(ref, m).toContain(`| \`${m}\` |`);
    for (const n of Object.keys(notifications)) expect(ref, n).toContain(`| \`${n}\` |`);
    for (const r of RULES) expect(ref, r.id).toContain(`**${r.id}**`);
    const machine = ref.slice(ref.indexOf('### The VM state machine'));
    for (const m of Object.keys(LIFECYCLE)) expect(machine, m).toContain(`| \`${m}\` |`);
  });
});
