import { connect, type Socket } from 'node:net';
import * as z from 'zod/mini';
import { FrameDecoder, frameText } from 'hvplug/transport';
import { HvplugError, TimeoutError } from '../core/index.js';
import { DAEMON_METHODS, MAX_ANSWER_BYTES, MAX_REQUEST_BYTES } from './api.js';
import { fromResponseError } from './errors.js';
import type { DaemonLockInfo } from './lock.js';

/** The daemon may start the VM's plugin and re-attach it before it can say where the console is. */
const ANSWER_TIMEOUT_MS = 120_000;

const Answer = z.union([
  z.object({ jsonrpc: z.literal('2.0'), id: z.literal(1), result: z.unknown() }),
  z.object({ jsonrpc: z.literal('2.0'), id: z.nullable(z.literal(1)), error: z.object({ code: z.number().check(z.int()), message: z.string(), data: z.optional(z.unknown()) }) }),
]);

export type DaemonConsole =
  | { kind: 'socket'; path: string; socket: Socket; first: Buffer }
  | { kind: 'log' | 'pty'; path: string };

/**
 * A VM's console through the daemon, on a connection of its own: one request, then, for a socket console, the
 * connection is the console's. `first` holds console bytes that came in the answer's last chunk.
 */
export function openDaemonConsole(daemon: DaemonLockInfo, vmId: string): Promise<DaemonConsole> {
  const method = DAEMON_METHODS.console.name;
  return new Promise((resolve, reject) => {
    const socket = connect(daemon.socket);
    const decoder = new FrameDecoder(MAX_ANSWER_BYTES);
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new TimeoutError(method, ANSWER_TIMEOUT_MS, `${method} through the hvplug daemon (pid ${daemon.pid}) got no answer within ${ANSWER_TIMEOUT_MS} ms`)),
      ANSWER_TIMEOUT_MS,
    );
    const onData = (chunk: Buffer): void => {
      let got: { body: Buffer; rest: Buffer } | undefined;
      try {
        got = decoder.pushOne(chunk);
      } catch (err) {
        fail(new HvplugError(`the hvplug daemon (pid ${daemon.pid}) answered ${method} with a broken frame: ${(err as Error).message}`, 'ProtocolError'));
        return;
      }
      if (!got) return;
      socket.off('data', onData);
      socket.pause();
      let answer: z.output<typeof Answer>;
      let result: z.output<typeof DAEMON_METHODS.console.result>;
      try {
        answer = Answer.parse(JSON.parse(got.body.toString('utf8')));
        if ('error' in answer) {
          fail(fromResponseError(answer.error.code, answer.error.message, answer.error.data));
          return;
        }
        result = DAEMON_METHODS.console.result.parse(answer.result);
      } catch (err) {
        fail(new HvplugError(`the hvplug daemon (pid ${daemon.pid}) answered ${method} with something else: ${(err as Error).message}`, 'ProtocolError'));
        return;
      }
      if (result.kind === 'socket' && !result.joined) {
        fail(new HvplugError(`the hvplug daemon (pid ${daemon.pid}) did not join the socket console ${result.path}`, 'ProtocolError'));
        return;
      }
      settled = true;
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (result.kind !== 'socket') {
        socket.destroy();
        resolve({ kind: result.kind, path: result.path });
        return;
      }
      // Until the session's own listeners: an error is followed by close, which ends the session.
      socket.on('error', () => undefined);
      resolve({ kind: 'socket', path: result.path, socket, first: got.rest });
    };
    const onError = (err: Error): void => fail(new HvplugError(`the hvplug daemon (pid ${daemon.pid}) on ${daemon.socket}: ${err.message}`, 'ProtocolError'));
    const onClose = (): void => fail(new HvplugError(`the hvplug daemon (pid ${daemon.pid}) closed the connection; ${method} got no answer`, 'ProtocolError'));
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('data', onData);
    socket.once('connect', () => {
      socket.write(frameText(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { vmId } }), MAX_REQUEST_BYTES));
    });
  });
}
