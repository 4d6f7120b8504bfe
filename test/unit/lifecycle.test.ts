import { describe, expect, it } from 'vitest';
import { allowedFrom, EVENT_STATUS, LIFECYCLE, methods, METHOD_NAMES, STATUS_CHANGING, VM_METHODS, VM_STATUSES } from 'hvplug/protocol';
import { TRANSITIONS } from '../../src/conformance/checks/lifecycle.js';

describe('the VM state machine (LIFECYCLE)', () => {
  it('has a row for exactly the VM-scoped methods of the method table, each with every status', () => {
    expect([...VM_METHODS].sort()).toEqual(METHOD_NAMES.filter((m) => methods[m].scope === 'vm').sort());
    for (const m of VM_METHODS) expect(Object.keys(LIFECYCLE[m]).sort(), m).toEqual([...VM_STATUSES].sort());
  });

  it('is consistent: forbidden leads nowhere, allowed leads somewhere, events lead where the transition says', () => {
    for (const m of VM_METHODS) {
      for (const s of VM_STATUSES) {
        const t = LIFECYCLE[m][s];
        const at = `${m} from ${s}`;
        if (t.verdict === 'forbidden') expect([t.to, t.events], at).toEqual([[], []]);
        else expect(t.to.length, at).toBeGreaterThan(0);
        // The last event that implies a status names the usual outcome (vm/delete's VM is gone after it).
        const implied = t.events.map((e) => EVENT_STATUS[e]).filter((x) => x !== undefined).at(-1);
        if (implied !== undefined && t.to[0] !== 'deleted') expect(implied, at).toBe(t.to[0]);
        if (t.waits) expect(m, at).toBe('vm/wait');
      }
      expect(allowedFrom(m).length, m).toBeGreaterThan(0);
    }
    expect([...STATUS_CHANGING].sort()).toEqual(['vm/delete', 'vm/migrate', 'vm/pause', 'vm/resume', 'vm/start', 'vm/stop', 'vm/wait']);
  });

  it('agrees with every transition the conformance lifecycle checks hold plugins to', () => {
    for (const { method, from, to } of TRANSITIONS) {
      const t = LIFECYCLE[method][from];
      if (to === 'refused') expect(t.verdict, `${method} from ${from}`).toBe('forbidden');
      else {
        expect(t.verdict, `${method} from ${from}`).toBe('must');
        expect(t.to, `${method} from ${from}`).toContain(to);
      }
    }
  });

  it('the lifecycle checks hold plugins to every pair the table settles (must or forbidden) of the methods they call', () => {
    const callable = [...new Set(TRANSITIONS.map((t) => t.method))];
    const settled = callable.flatMap((method) =>
      (['created', 'running', 'paused', 'stopped'] as const)
        .filter((from) => LIFECYCLE[method][from].verdict !== 'may')
        .map((from) => `${method} from ${from}`),
    );
    expect(TRANSITIONS.map((t) => `${t.method} from ${t.from}`).sort()).toEqual(settled.sort());
  });

  it('says which method an idempotent repeat concerns: stop and delete succeed in the status they lead to', () => {
    expect(LIFECYCLE['vm/stop'].stopped).toMatchObject({ verdict: 'must', to: ['stopped'], events: [] });
    expect(LIFECYCLE['vm/pause'].paused.verdict).toBe('forbidden');
    expect(LIFECYCLE['vm/wait'].created).toMatchObject({ verdict: 'must', to: ['created'] });
    expect(LIFECYCLE['vm/wait'].created.waits).toBeUndefined();
  });
});
