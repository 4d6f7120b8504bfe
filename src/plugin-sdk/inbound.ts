import type { Message, MessageReader } from 'vscode-jsonrpc/node';
import { tapReader } from 'hvplug/transport';

const CANCEL = '$/cancelRequest';

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isId = (v: unknown): v is string | number => typeof v === 'string' || typeof v === 'number';

/**
 * Why a message read from the host must not reach vscode-jsonrpc, or undefined when it may. vscode-jsonrpc
 * trusts the shape of what it is handed: it reads `params.id` of a `$/cancelRequest` outside any try (a
 * malformed one killed the plugin), and logs a message it cannot classify with JSON.stringify(msg, null, 4),
 * quadratic in the message's depth. What it would choke on is dropped here instead, each with a reason that
 * quotes nothing of the message.
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
  // vscode-jsonrpc's own test for an answer; what fails it is logged whole by vscode-jsonrpc.
  if (msg.result === undefined && !msg.error) return 'not a JSON-RPC message: an answer with neither result nor error';
  // Its error would be logged whole; and the host sends no answers anyway (the plugin asks it nothing).
  if (msg.id === null) return 'an answer without id';
  return undefined;
}

/** `inner`, without the messages `refusal` turns away: each is reported to `dropped` instead. */
export function refuseMalformed(inner: MessageReader, dropped: (reason: string) => void): MessageReader {
  return tapReader(inner, (msg: Message) => {
    const reason = refusal(msg);
    if (reason === undefined) return true;
    dropped(reason);
    return false;
  });
}
