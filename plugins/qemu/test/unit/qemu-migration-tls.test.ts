// When the QEMU plugin's migration stream goes in TLS, and what it refuses: the directory of --migration-tls-dir
// checked at start, and the source's decision from the destination's answer.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PluginError, UsageError } from 'hvplug/plugin-sdk';
import { MIGRATION_TLS_FILES, migrationTlsDir, sendingSecurity } from '../../src/migration-tls.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hvplug-qemu-tls-unit-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('migrationTlsDir', () => {
  it('is undefined without the flag, and an absolute directory holding the whole layout with it', async () => {
    expect(migrationTlsDir(undefined)).toBeUndefined();
    for (const f of MIGRATION_TLS_FILES) await writeFile(join(dir, f), 'pem');
    expect(migrationTlsDir(`${dir}/.`)).toBe(dir);
  });

  it('names what is wrong: no such directory, a file, missing files, an empty value', async () => {
    expect(() => migrationTlsDir(join(dir, 'nope'))).toThrow(UsageError);
    expect(() => migrationTlsDir(join(dir, 'ca-cert.pem'))).toThrow(/not a directory/);
    expect(() => migrationTlsDir('')).toThrow(/empty/);
    await rm(join(dir, 'client-key.pem'));
    expect(() => migrationTlsDir(dir)).toThrow(/no readable client-key\.pem/);
  });
});

describe('sendingSecurity', () => {
  const refusal = (f: () => unknown): PluginError => {
    try {
      f();
    } catch (e) {
      return e as PluginError;
    }
    throw new Error('not refused');
  };

  it('TLS when the destination asks and this plugin has credentials, checked against the host of the uri', () => {
    expect(sendingSecurity('tcp:10.0.0.2:4444', true, '/tls')).toEqual({ tls: true, dir: '/tls', hostname: '10.0.0.2' });
    expect(sendingSecurity('tcp:[fd00::2]:4444', true, '/tls')).toEqual({ tls: true, dir: '/tls', hostname: 'fd00::2' });
    expect(sendingSecurity('tcp:dst.example:4444', true, '/tls')).toEqual({ tls: true, dir: '/tls', hostname: 'dst.example' });
  });

  it('plaintext on a unix socket, and over TCP for a plugin without credentials', () => {
    expect(sendingSecurity('unix:/run/x/migrate.sock', false, '/tls')).toEqual({ tls: false });
    expect(sendingSecurity('tcp:10.0.0.2:4444', false, undefined)).toEqual({ tls: false });
  });

  it('refuses (NotSupported) TLS it cannot send, and plaintext over TCP once it has credentials', () => {
    const noCreds = refusal(() => sendingSecurity('tcp:10.0.0.2:4444', true, undefined));
    expect([noCreds.codeName, noCreds.message]).toEqual(['NotSupported', expect.stringMatching(/in TLS only.*--migration-tls-dir/)]);
    const plain = refusal(() => sendingSecurity('tcp:10.0.0.2:4444', false, '/tls'));
    expect([plain.codeName, plain.message]).toEqual(['NotSupported', expect.stringMatching(/takes the stream in plaintext.*TLS only/)]);
    expect(refusal(() => sendingSecurity('unix:/run/x/migrate.sock', true, '/tls')).codeName).toBe('NotSupported');
  });
});
