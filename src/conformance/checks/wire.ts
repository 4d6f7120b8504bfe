import { fail, type CheckDef } from '../check.js';
import type { Direction } from '../wire-monitor.js';

function wireCheck(direction: Direction): CheckDef {
  const [from, to] = direction === 'send' ? ['host', 'plugin'] : ['plugin', 'host'];
  return {
    id: `wire.${from}-to-${to}`,
    title: `every message ${from} → ${to} matches the method table`,
    verifies: `The wire, ${from} to ${to}: JSON-RPC 2.0 envelopes, params, results and error data as the method table's schemas define them.`,
    late: true,
    run: async (fx) => {
      const v = fx.run.wire.violations.filter((x) => x.direction === direction);
      if (!v.length) return;
      // All of them: the JSON and JUnit reports are where a vendor reads the whole list; the console abbreviates.
      fail(`${v.length} message(s) break the protocol:\n${v.map((x) => `[${x.check}, ${x.tag}] ${x.what}`).join('\n')}`);
    },
  };
}

export function wireChecks(): CheckDef[] {
  return [wireCheck('send'), wireCheck('receive')];
}
