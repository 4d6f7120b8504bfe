import { ErrorCode, ErrorData, GATED_METHODS, isMethodName, negotiateVersion, parseSemver, PROTOCOL_VERSIONS, sameMajor } from 'hvplug/protocol';
import { expect, fail, SkipCheck, type CheckDef } from '../check.js';
import type { Fixture, RunContext } from '../fixture.js';

/** A major the plugin cannot speak: the refusal probe offers only this. */
const UNKNOWN_MAJOR = '99.0.0';

const initialize: CheckDef = {
  id: 'handshake.initialize',
  title: 'initialize answers a version the host offered and honest capabilities',
  verifies: 'Handshake: the chosen protocol version shares a major with the host\'s; capabilities name only gated methods of the table.',
  run: async (fx) => {
    const { info } = fx.run;
    expect(
      PROTOCOL_VERSIONS.some((v) => sameMajor(v, info.protocolVersion)),
      `the plugin chose protocol ${info.protocolVersion}; the host offered ${PROTOCOL_VERSIONS.join(', ')}`,
    );
    for (const m of info.capabilities.methods) {
      expect(isMethodName(m), `capabilities.methods lists ${m}, which the method table does not have`);
      expect(GATED_METHODS.includes(m), `capabilities.methods lists ${m}, which every plugin answers and nobody advertises`);
    }
    expect(new Set(info.capabilities.methods).size === info.capabilities.methods.length, 'capabilities.methods lists a method twice');
    if (info.capabilities.methods.includes('vm/console')) {
      expect(info.capabilities.consoleKinds.length > 0, 'vm/console is advertised but capabilities.consoleKinds is empty');
    }
    const addsDevices = info.capabilities.methods.includes('device/add');
    const anyPlug = Object.values(info.capabilities.devices).some((d) => d?.coldplug || d?.hotplug);
    expect(!addsDevices || anyPlug, 'device/add is advertised but no device type can be plugged');
    const net = info.capabilities.devices.net;
    expect(!(net?.coldplug || net?.hotplug) || info.capabilities.netBackends.length > 0, 'net devices are advertised but capabilities.netBackends is empty');
  },
};

interface Refusal {
  /** The error response on the wire, if initialize was answered with one. */
  error?: { code: number; message: string; data?: unknown };
  /** Set when the plugin accepted the handshake instead. */
  accepted?: string;
}

const refusals = new WeakMap<RunContext, Promise<Refusal>>();

/** Starts a process offering only an unknown major and reads its answer to initialize off the wire (once per run). */
function refusal(fx: Fixture): Promise<Refusal> {
  let probe = refusals.get(fx.run);
  if (!probe) {
    probe = (async (): Promise<Refusal> => {
      const tag = fx.run.session.nextTag('aux');
      try {
        const conn = await fx.run.session.connect('aux', { protocolVersions: [UNKNOWN_MAJOR], tag });
        await fx.run.session.disconnect(conn);
        return { accepted: conn.client.info.protocolVersion };
      } catch (err) {
        // No second connection to a listening plugin: not the plugin's answer, and not to be read as one.
        if (err instanceof SkipCheck) throw err;
        // The host also refuses an answer outside the offered majors: the wire tells which it was.
        const answer = fx.run.wire.find((r) => r.tag === tag && r.direction === 'receive' && r.message.method === undefined);
        const result = answer?.message.result as { protocolVersion?: unknown } | undefined;
        if (result) return { accepted: String(result.protocolVersion) };
        return { error: answer?.message.error as Refusal['error'] };
      }
    })();
    refusals.set(fx.run, probe);
  }
  return probe;
}

const versionRefusal: CheckDef = {
  id: 'handshake.version-refusal',
  title: `initialize offering only protocol ${UNKNOWN_MAJOR} is refused with ProtocolVersionMismatch naming both lists`,
  verifies: 'Handshake: no common major version is an error, with the host\'s and the plugin\'s versions in its data.',
  run: async (fx) => {
    const r = await refusal(fx);
    if (r.accepted) fail(`the plugin accepted protocol ${UNKNOWN_MAJOR}, answering ${r.accepted}`);
    if (!r.error) fail('the plugin answered initialize with nothing (it died or hung)');
    expect(r.error.code === ErrorCode.ProtocolVersionMismatch, `initialize failed with code ${r.error.code} (${r.error.message}), not ProtocolVersionMismatch`);
    const data = ErrorData.ProtocolVersionMismatch.safeParse(r.error.data);
    if (!data.success) fail(`the ProtocolVersionMismatch error does not name both lists in its data: ${JSON.stringify(r.error.data)}`);
    expect(data.data.host.length === 1 && data.data.host[0] === UNKNOWN_MAJOR, `the error names the host's versions as ${JSON.stringify(data.data.host)}`);
    expect(data.data.plugin.length > 0, 'the error names no version of the plugin');
  },
};

const versionNegotiation: CheckDef = {
  id: 'handshake.version-negotiation',
  title: 'offered a newer minor and an unknown major, the plugin picks the highest common version no newer than either side',
  verifies: 'Version negotiation: the highest common major, and within it the older of the two sides\' newest versions.',
  run: async (fx) => {
    const ours = parseSemver(fx.run.info.protocolVersion);
    if (!ours) fail(`the plugin chose ${fx.run.info.protocolVersion}, which is not a semver version`);
    const offered = [`${ours.major}.999.0`, UNKNOWN_MAJOR];
    const conn = await fx.connect('aux', offered);
    const chosen = conn.client.info.protocolVersion;
    const c = parseSemver(chosen);
    if (!c) fail(`the plugin chose ${chosen}, which is not a semver version`);
    expect(c.major === ours.major, `offered ${offered.join(', ')}, the plugin chose ${chosen}`);
    // The refusal tells which versions the plugin speaks; then the right answer is known exactly.
    const speaks = ErrorData.ProtocolVersionMismatch.safeParse((await refusal(fx)).error?.data);
    if (speaks.success) {
      const expected = negotiateVersion(offered, speaks.data.plugin);
      expect(chosen === expected, `offered ${offered.join(', ')}, the plugin (speaking ${speaks.data.plugin.join(', ')}) chose ${chosen}, not ${expected}`);
    }
  },
};

export function handshakeChecks(): CheckDef[] {
  return [initialize, versionRefusal, versionNegotiation];
}
