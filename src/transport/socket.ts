import { chmod, unlink } from 'node:fs/promises';
import type * as NetModule from 'node:net';
import type * as TlsModule from 'node:tls';
import { formatAddress, type PluginAddress } from './address.js';

/**
 * node:net and node:tls are loaded when a socket is opened, not at import: a plugin's startup snapshot cannot
 * hold node:tls (its crypto bindings are external references V8 does not serialize), and a plugin on stdio
 * never opens one. getBuiltinModule is synchronous (Node >= 20.16).
 */
const builtin = <T>(id: string): T => {
  const get = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  if (!get) throw new Error(`sockets need Node >= 20.16 (process.getBuiltinModule), this is ${process.version}`);
  return get(id) as T;
};
const netModule = (): typeof NetModule => builtin<typeof NetModule>('node:net');
const tlsModule = (): typeof TlsModule => builtin<typeof TlsModule>('node:tls');

/**
 * The sockets the protocol runs over when a plugin listens instead of being spawned: a unix socket, or TCP
 * with mutual TLS. The framing on top is the same as on stdio.
 */

/** PEM text: the own certificate chain and key, and the CA that signs the other side's certificates. */
export interface TlsMaterial {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
}

/** TLS 1.3 and nothing older: no renegotiation, no static-RSA key exchange, fewer ways to get it wrong. */
const TLS_ONLY_13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

/** An unauthenticated peer gets this long to finish its TLS handshake. */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

export class SocketError extends Error {
  override readonly name = 'SocketError';
}

/**
 * Connects to a listening plugin. Over TLS the plugin's certificate must be signed by `material.ca` and name
 * the host connected to; the plugin checks ours the same way, and in TLS 1.3 its refusal arrives after this
 * resolves, as an error on the socket's first read.
 */
export function connectSocket(addr: PluginAddress, material: TlsMaterial | undefined, timeoutMs: number): Promise<NetModule.Socket> {
  return new Promise((resolve, reject) => {
    let socket: NetModule.Socket;
    if (addr.kind === 'unix') {
      socket = netModule().connect({ path: addr.path });
    } else {
      if (!material) {
        reject(new SocketError(`${formatAddress(addr)}: a TLS address needs a certificate, key and CA`));
        return;
      }
      socket = tlsModule().connect({
        host: addr.host,
        port: addr.port,
        cert: material.cert,
        key: material.key,
        ca: material.ca,
        // A name for SNI and the certificate check; an IP address is checked against the certificate's IP SANs.
        ...(netModule().isIP(addr.host) ? {} : { servername: addr.host }),
        ...TLS_ONLY_13,
      });
    }
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new SocketError(`${formatAddress(addr)}: no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once(addr.kind === 'unix' ? 'connect' : 'secureConnect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new SocketError(`${formatAddress(addr)}: ${err.message}`, { cause: err }));
    };
    socket.once('error', onError);
  });
}

export interface ListeningSocket {
  /** The address bound, the port filled in when 0 was asked for. */
  readonly address: PluginAddress;
  close(): Promise<void>;
}

export interface ListenHandlers {
  /** A connection that passed TLS (its peer's certificate checked), or any on a unix socket. */
  connection(socket: NetModule.Socket, peer: string): void;
  /**
   * A connection refused before it reached `connection`. With `socket`, the peer's certificate was refused
   * after the handshake: the socket is the handler's to tell the peer why and close (it must serve nothing).
   */
  refused(reason: string, socket?: NetModule.Socket): void;
}

/** OpenSSL's verdicts on a peer certificate that an operator meets most, in words; others by their code. */
const VERDICTS: Record<string, string> = {
  CERT_HAS_EXPIRED: 'certificate has expired',
  CERT_NOT_YET_VALID: 'certificate is not yet valid',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate is not signed by the client CA',
  UNABLE_TO_GET_ISSUER_CERT: 'certificate is not signed by the client CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'certificate is not signed by the client CA',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'certificate is self-signed, not signed by the client CA',
  SELF_SIGNED_CERT_IN_CHAIN: 'certificate chain ends in a CA other than the client CA',
  CERT_REVOKED: 'certificate is revoked',
};

function refusalReason(err: Error | string | null | undefined): string {
  if (err === null || err === undefined) return 'no certificate';
  const code = typeof err === 'string' ? err : ((err as { code?: string }).code ?? err.message);
  return VERDICTS[code] ? `${VERDICTS[code]} (${code})` : code;
}

/** Who is on the other end, for logs and for the refusal of a second host. */
function describePeer(socket: NetModule.Socket): string {
  if (!(socket instanceof tlsModule().TLSSocket)) return 'a client on the unix socket';
  const cert = socket.getPeerCertificate();
  const cn = cert.subject?.CN;
  return `${socket.remoteAddress}:${socket.remotePort}${cn ? ` (certificate CN=${String(cn)})` : ''}`;
}

/**
 * A unix socket left by a process that died would make listen fail with EADDRINUSE: it is removed when nothing
 * answers on it, and refused when something does.
 */
async function clearStaleSocket(path: string): Promise<void> {
  const answered = await new Promise<boolean>((resolve) => {
    const probe = netModule().connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (answered) throw new SocketError(`unix:${path}: something already listens there`);
  await unlink(path).catch(() => undefined);
}

export async function listenSocket(addr: PluginAddress, material: TlsMaterial | undefined, on: ListenHandlers): Promise<ListeningSocket> {
  let server: NetModule.Server;
  if (addr.kind === 'unix') {
    await clearStaleSocket(addr.path);
    server = netModule().createServer((socket) => on.connection(socket, describePeer(socket)));
  } else {
    if (!material) throw new SocketError(`${formatAddress(addr)}: a TLS address needs a certificate, key and client CA`);
    server = tlsModule().createServer(
      {
        cert: material.cert,
        key: material.key,
        ca: material.ca,
        // Mutual TLS: a client certificate is asked for and checked against `ca`, below, by node's verdict. Not
        // with rejectUnauthorized: node then hangs up without a word, and the host's operator is left guessing
        // whether it was the certificate, its CA, its dates or the network.
        requestCert: true,
        rejectUnauthorized: false,
        handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
        ...TLS_ONLY_13,
      },
      (socket) => {
        if (socket.authorized) {
          on.connection(socket, describePeer(socket));
          return;
        }
        // Without a certificate node's verdict is about the issuer of none (UNABLE_TO_GET_ISSUER_CERT): say what it is.
        const sent = Object.keys(socket.getPeerCertificate()).length > 0;
        const why = sent ? refusalReason(socket.authorizationError) : refusalReason(null);
        on.refused(`${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}: the host's certificate was refused: ${why}`, socket);
      },
    );
    server.on('tlsClientError', (err, socket) => on.refused(`${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}: ${err.message}`));
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new SocketError(`${formatAddress(addr)}: ${err.message}`, { cause: err })));
    if (addr.kind === 'unix') server.listen(addr.path, () => resolve());
    else server.listen(addr.port, addr.host, () => resolve());
  });
  // The socket file's mode is the unix socket's whole access control: only this user may connect.
  if (addr.kind === 'unix') await chmod(addr.path, 0o600);
  server.on('error', () => undefined);
  const bound = server.address();
  const address: PluginAddress = addr.kind === 'tls' && bound !== null && typeof bound === 'object' ? { ...addr, port: bound.port } : addr;
  return {
    address,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
