/**
 * Where a listening plugin is: `unix:<path>` or `tls://<host>:<port>`. Nothing else: a plugin on the network
 * is spoken to over mutual TLS only, so `tcp://` (plaintext) is refused here, where a config is read, and
 * never reaches a socket.
 */
export type PluginAddress = { kind: 'unix'; path: string } | { kind: 'tls'; host: string; port: number };

export class AddressError extends Error {
  override readonly name = 'AddressError';
}

/** The longest address text taken: a unix socket path is at most 107 bytes, a host name 253. */
const MAX_ADDRESS_CHARS = 300;

export function parseAddress(text: string): PluginAddress {
  if (text.length > MAX_ADDRESS_CHARS) throw new AddressError(`address longer than ${MAX_ADDRESS_CHARS} characters`);
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    if (path === '' || path.includes('\0')) throw new AddressError(`${JSON.stringify(text)}: expected unix:<socket path>`);
    return { kind: 'unix', path };
  }
  if (/^tcp:\/\//i.test(text)) {
    throw new AddressError(`${JSON.stringify(text)}: plaintext TCP is not supported; a plugin on the network is reached over mutual TLS (tls://<host>:<port>)`);
  }
  const m = /^tls:\/\/(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  if (!m) throw new AddressError(`${JSON.stringify(text)}: expected unix:<socket path> or tls://<host>:<port>`);
  const port = Number(m[3]);
  if (port > 65_535) throw new AddressError(`${JSON.stringify(text)}: port ${port} is out of range`);
  return { kind: 'tls', host: m[1] ?? (m[2] as string), port };
}

export function formatAddress(a: PluginAddress): string {
  if (a.kind === 'unix') return `unix:${a.path}`;
  return `tls://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
