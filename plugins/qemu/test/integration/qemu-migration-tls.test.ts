// Live migration of a real QEMU guest (TCG) in TLS, QEMU's tls-creds-x509, between plugins in two network
// namespaces, each started with --migration-tls-dir: the guest moves and its counter continues; a source whose
// certificate is of another CA, or that has no credentials, fails and the guest runs on at the source.
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NotSupportedError, VmmFailureError, type PluginHost } from 'hvplug';
import { SKIP_MESSAGE, findQemu } from '../../test-support/guest.js';
import { MigrationLab, NET, NETNS_SKIP, namespacePair, readText, ticks } from './migration-lab.js';
import { makeCerts } from '../../../../test/remote-certs.js';
import { alive, eventually, pluginExecutable, removeTempDirs, tempDir } from '../../../../test/helpers.js';

const qemu = findQemu();
if (!qemu) console.warn(`skipping QEMU migration TLS tests: ${SKIP_MESSAGE}`);
if (NETNS_SKIP) console.warn(`skipping QEMU migration TLS tests: ${NETNS_SKIP}`);

/** A directory in QEMU's tls-creds-x509 layout. */
async function qemuTlsDir(dir: string, files: { ca: string[]; server: { cert: string; key: string }; client: { cert: string; key: string } }): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'ca-cert.pem'), (await Promise.all(files.ca.map((f) => readFile(f, 'utf8')))).join(''));
  await copyFile(files.server.cert, join(dir, 'server-cert.pem'));
  await copyFile(files.server.key, join(dir, 'server-key.pem'));
  await copyFile(files.client.cert, join(dir, 'client-cert.pem'));
  await copyFile(files.client.key, join(dir, 'client-key.pem'));
  return dir;
}

const lab = new MigrationLab();

describe.skipIf(!qemu || NETNS_SKIP !== undefined)('QEMU live migration in TLS between two network namespaces (TCG)', () => {
  const net = namespacePair('hvtls');
  let dir: string;
  /** Both hosts' credentials: one CA, a server certificate valid for both namespaces' addresses, a client one. */
  let trusted: string;
  /** A client certificate of another CA; its CA file holds both CAs, so this QEMU trusts itself and the destination. */
  let stranger: string;

  beforeAll(async () => {
    net.create();
    dir = await tempDir('hvplug-qemu-mig-tls-');
    await mkdir(join(dir, 'certs'));
    const certs = await makeCerts(join(dir, 'certs'), [NET.a, NET.b]);
    trusted = await qemuTlsDir(join(dir, 'trusted'), { ca: [certs.ca], server: certs.server, client: certs.hostA });
    stranger = await qemuTlsDir(join(dir, 'stranger'), { ca: [certs.ca, certs.otherCa], server: certs.server, client: certs.stranger });
  }, 60_000);

  afterEach(() => lab.cleanup(), 60_000);

  afterAll(async () => {
    net.remove();
    await removeTempDirs();
  });

  const hosts = (name: string, srcArgs: string[]): { src: PluginHost; dst: PluginHost } => ({
    src: lab.newHost(join(dir, name), 'a', { netns: net.ns.a, args: srcArgs }),
    dst: lab.newHost(join(dir, name), 'b', { netns: net.ns.b, args: ['--migration-tls-dir', trusted] }),
  });

  it('moves a running guest in TLS: the counter continues at the destination', async () => {
    const { src, dst } = hosts('ok', ['--migration-tls-dir', trusted]);
    const report = await lab.migrateTicker(src, dst, NET.b);
    expect(report.tls).toBe(true);
  }, 240_000);

  it('a source whose certificate is of another CA fails: the guest runs on at the source, nothing is left at the destination', async () => {
    const { src, dst } = hosts('stranger', ['--migration-tls-dir', stranger]);
    const { vm, pid, consoleLog } = await lab.ticker(src);
    const began = Date.now();
    const err = await src.migrate(vm.id, dst, { address: NET.b }).catch((e: unknown) => e);
    // The destination's handshake refuses the certificate and cuts the connection: the source hears it at once.
    expect(err).toBeInstanceOf(VmmFailureError);
    expect((err as Error).message).toMatch(/migration to tcp:10\.254\.77\.2:\d+ failed: .*TLS/);
    expect(Date.now() - began).toBeLessThan(60_000);
    expect((await dst.records()).records).toEqual([]);
    expect((await src.records()).records.map((r) => [r.vmId, r.status, r.migration])).toEqual([[vm.id, 'running', undefined]]);
    const info = await vm.info();
    expect([info.status, info.pid, alive(pid)]).toEqual(['running', pid, true]);
    const before = Math.max(...ticks(readText(consoleLog)));
    await eventually(() => Math.max(...ticks(readText(consoleLog))) >= before + 2, 30_000, 'the guest ticking on at the source');
  }, 180_000);

  it('a source without credentials is refused before it sends; a plaintext stream sent anyway fails, and the guest runs on', async () => {
    const { src, dst } = hosts('plain', []);
    // Nothing here needs the guest booted: the refusals come before or during the stream's first bytes.
    const { vm, pid } = await lab.ticker(src, 0);
    const err = await src.migrate(vm.id, dst, { address: NET.b }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotSupportedError);
    expect((err as Error).message).toMatch(/in TLS only.*--migration-tls-dir/);
    expect((await dst.records()).records).toEqual([]);

    // A source that does not pass the destination's answer on (an older host) sends in the clear: the destination's
    // handshake cuts it, and the source fails instead of waiting.
    const target = await dst.prepareIncoming(vm.id, 'qemu', vm.config, src.identity, NET.b);
    expect(target.tls).toBe(true);
    const began = Date.now();
    const cut = await vm.migrate({ uri: target.uri }).catch((e: unknown) => e);
    expect(cut).toBeInstanceOf(VmmFailureError);
    expect((cut as Error).message).toMatch(/migration to tcp:10\.254\.77\.2:\d+ failed/);
    expect(Date.now() - began).toBeLessThan(60_000);
    await dst.abortIncoming(vm.id);
    expect((await dst.records()).records).toEqual([]);
    const info = await vm.info();
    expect([info.status, info.pid, alive(pid)]).toEqual(['running', pid, true]);
  }, 120_000);

  it('a plugin whose --migration-tls-dir lacks a file of the layout does not start (usage error, status 2)', () => {
    const run = spawnSync(pluginExecutable('qemu'), ['--migration-tls-dir', join(dir, 'certs')], { encoding: 'utf8', timeout: 30_000, input: '' });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/--migration-tls-dir .*certs: no readable ca-cert\.pem, server-cert\.pem/);
  });
});
