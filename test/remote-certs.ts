import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';

/** PEM files made by openssl for one test run: a CA, another CA, and certificates signed by them. */
export interface Certs {
  dir: string;
  ca: string;
  otherCa: string;
  /** The plugin's: CN=plugin, valid for 127.0.0.1, localhost and the extra IPs makeCerts was given. */
  server: { cert: string; key: string };
  /** Hosts' certificates, signed by `ca`. */
  hostA: { cert: string; key: string };
  hostB: { cert: string; key: string };
  /** Signed by `otherCa`. */
  stranger: { cert: string; key: string };
  /** Signed by `ca`, its validity over before it began. */
  expired: { cert: string; key: string };
}

async function openssl(dir: string, args: string[]): Promise<void> {
  await execa('openssl', args, { cwd: dir });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

async function makeCa(dir: string, name: string): Promise<string> {
  await openssl(dir, ['req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=${name}`, '-days', '2']);
  return join(dir, `${name}.crt`);
}

async function issue(dir: string, name: string, ca: string, opts: { days: number; server?: boolean; ips?: readonly string[] }): Promise<{ cert: string; key: string }> {
  await openssl(dir, ['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
  const ext = join(dir, `${name}.ext`);
  await writeFile(
    ext,
    opts.server
      ? `subjectAltName=${['IP:127.0.0.1', 'DNS:localhost', ...(opts.ips ?? []).map((ip) => `IP:${ip}`)].join(',')}\nextendedKeyUsage=serverAuth\n`
      : 'extendedKeyUsage=clientAuth\n',
  );
  await openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', String(opts.days), '-extfile', ext]);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

/** `serverIps`: more addresses the plugin's certificate is valid for (a plugin in a network namespace). */
export async function makeCerts(dir: string, serverIps: readonly string[] = []): Promise<Certs> {
  const ca = await makeCa(dir, 'ca');
  const otherCa = await makeCa(dir, 'other-ca');
  return {
    dir,
    ca,
    otherCa,
    server: await issue(dir, 'plugin', 'ca', { days: 2, server: true, ips: serverIps }),
    hostA: await issue(dir, 'host-a', 'ca', { days: 2 }),
    hostB: await issue(dir, 'host-b', 'ca', { days: 2 }),
    stranger: await issue(dir, 'stranger', 'other-ca', { days: 2 }),
    // openssl 3.0 has no -not_after: -1 day ends the validity a day before it starts.
    expired: await issue(dir, 'expired', 'ca', { days: -1 }),
  };
}
