const CANCEL = '$/cancelRequest';

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isId = (v: unknown): v is string | number => typeof v === 'string' || typeof v === 'number';

/**
 * Why a message read from the host is dropped, or undefined when it is dispatched (rpc.ts). What passes is an
 * object whose method, when it has one, is a string and whose id is a string or a number (or, for an answer,
 * null); a `$/cancelRequest` has a string or number params.id. A JSON-RPC library that trusted the shape of
 * what it read was killed by a malformed cancel, and spent time quadratic in the depth of a message it could
 * not classify to log it whole: each reason here quotes nothing of the message.
 */
export function refusal(msg: unknown): string | undefined {
  if (!isPlainObject(msg)) {
    const kind = msg === null ? 'null' : Array.isArray(msg) ? 'an array' : `a ${typeof msg}`;
    return `not a JSON-RPC message: ${kind}, not an object`;
  }
  const hasId = Object.hasOwn(msg, 'id');
  if (hasId && msg.id !== null && !isId(msg.id)) return 'not a JSON-RPC message: its id is neither a string, a number nor null';
  if (Object.hasOwn(msg, 'method')) {
    if (typeof msg.method !== 'string') return 'not a JSON-RPC message: its method is not a string';
    if (!hasId) {
      if (msg.method === CANCEL && !(isPlainObject(msg.params) && isId(msg.params.id))) return `malformed ${CANCEL}: params.id is neither a string nor a number`;
      return undefined;
    }
    return msg.id === null ? 'not a JSON-RPC message: a request with a null id' : undefined;
  }
  if (!hasId) return 'not a JSON-RPC message: neither method nor id';
  if (msg.result === undefined && !msg.error) return 'not a JSON-RPC message: an answer with neither result nor error';
  // The host sends no answers anyway: the plugin asks it nothing.
  if (msg.id === null) return 'an answer without id';
  return undefined;
}
