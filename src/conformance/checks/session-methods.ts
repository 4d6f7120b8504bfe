import { formatIssues, methods, toIssues, type MethodName, type Methods, type ResultOf } from 'hvplug/protocol';
import { expect, expectRejection, fail, type CheckDef } from '../check.js';

/** The methods every plugin answers, unadvertised: the host's own (handshake, health, discovery). */
type SessionMethod = { [M in MethodName]: Methods[M]['scope'] extends 'session' ? M : never }[MethodName];

/** Which check verifies each session method: adding one to the table without a check fails the typecheck. */
export const SESSION_METHOD_CHECKS: Record<SessionMethod, string> = {
  initialize: 'handshake.initialize',
  shutdown: 'process.shutdown',
  'health/ping': 'method.health/ping.valid',
  'rpc.discover': 'method.rpc.discover.valid',
};

/** Session methods have no shim call: their answers are held to the table here. */
function parsed<M extends SessionMethod>(method: M, raw: unknown): ResultOf<M> {
  const r = methods[method].result.safeParse(raw);
  if (!r.success) fail(`${method} answered ${JSON.stringify(raw)}: ${formatIssues(toIssues(r.error))}`);
  return r.data as ResultOf<M>;
}

const ping: CheckDef = {
  id: 'method.health/ping.valid',
  title: 'health/ping answers the plugin\'s uptime',
  verifies: 'health/ping: the liveness probe the supervisor relies on.',
  run: async (fx) => {
    const a = parsed('health/ping', await fx.raw('health/ping', {}));
    const b = parsed('health/ping', await fx.raw('health/ping', {}));
    expect(b.uptimeMs >= a.uptimeMs, `uptime went backwards: ${a.uptimeMs} then ${b.uptimeMs}`);
  },
};

const discover: CheckDef = {
  id: 'method.rpc.discover.valid',
  title: 'rpc.discover answers an OpenRPC document naming every advertised method',
  verifies: 'rpc.discover: the language-neutral spec, as OpenRPC prescribes.',
  run: async (fx) => {
    const doc = parsed('rpc.discover', await fx.raw('rpc.discover', {}));
    expect(typeof doc.openrpc === 'string', 'the document has no openrpc version');
    expect(Array.isArray(doc.methods), 'the document has no methods list');
    const names = new Set((doc.methods as unknown[]).map((m) => (m as { name?: unknown } | null)?.name));
    const missing = fx.caps.methods.filter((m) => !names.has(m));
    expect(!missing.length, `the document does not describe ${missing.join(', ')}, which the plugin advertises`);
  },
};

const unknown: CheckDef = {
  id: 'method.unknown.refused',
  title: 'a method the protocol does not have is refused with MethodNotFound',
  verifies: 'JSON-RPC 2.0: an unknown method is answered MethodNotFound, not ignored.',
  run: async (fx) => {
    await expectRejection(fx.rawInvalid('conformance/no-such-method', {}), 'MethodNotFound', 'an unknown method');
  },
};

export function sessionMethodChecks(): CheckDef[] {
  return [ping, discover, unknown];
}
