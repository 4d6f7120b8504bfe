import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { servePlugin, type PluginDefinition, type Session } from 'hvplug/plugin-sdk';
import { rehearse, type ServeStreams } from '../../src/plugin-sdk/rehearsal.js';

/** rehearse() serves the way servePlugin does over given streams; what each served session did is recorded. */
function recorder(): { serve: ServeStreams; sessions: { plugin: string; closed: boolean }[] } {
  const sessions: { plugin: string; closed: boolean }[] = [];
  const serve: ServeStreams = (def, streams) => {
    const served = servePlugin(def, { ...streams, listen: false });
    const session = { plugin: def.info.name, closed: false };
    sessions.push(session);
    void served.closed.then(() => (session.closed = true));
    return served;
  };
  return { serve, sessions };
}

function plugin(calls: string[], overrides: Partial<PluginDefinition> = {}): PluginDefinition & { inits: Session[] } {
  const inits: Session[] = [];
  return {
    inits,
    info: { name: 'rehearsed', version: '1.0.0', vendor: 'hvplug tests' },
    capabilities: {},
    handlers: {
      'vm/create': ({ vmId }) => {
        calls.push(`vm/create ${vmId}`);
        return { status: 'created' };
      },
      'vm/check': ({ vmId }) => {
        calls.push(`vm/check ${vmId}`);
        return { ok: true, detail: '' };
      },
    },
    onInitialize: (session) => {
      calls.push('initialize');
      inits.push(session);
    },
    ...overrides,
  };
}

describe('plugin SDK: the rehearsal played while a startup snapshot is built', () => {
  it('plays the handshake and then each call in order, on a definition of its own, and ends the session', async () => {
    const calls: string[] = [];
    const made: ReturnType<typeof plugin>[] = [];
    const { serve, sessions } = recorder();
    await rehearse(serve, {
      definition: () => {
        const def = plugin(calls);
        made.push(def);
        return def;
      },
      calls: [
        { method: 'vm/create', params: { vmId: 'a', config: {} } },
        { method: 'vm/check', params: { vmId: 'a' } },
      ],
    });
    expect(made).toHaveLength(1);
    expect(calls).toEqual(['initialize', 'vm/create a', 'vm/check a']);
    expect(sessions).toEqual([{ plugin: 'rehearsed', closed: true }]);
  });

  it('gives the handshake directories in a scratch directory, which is gone after', async () => {
    const calls: string[] = [];
    let def: ReturnType<typeof plugin> | undefined;
    await rehearse(recorder().serve, {
      definition: () => (def = plugin(calls)),
      calls: [{ method: 'vm/create', params: { vmId: 'a', config: {} } }],
    });
    const init = def?.inits[0]?.init;
    expect(init?.stateDir).toMatch(/hvplug-rehearsal-[^/]+\/state$/);
    expect(init?.runtimeDir).toMatch(/hvplug-rehearsal-[^/]+\/run$/);
    expect(existsSync(dirname(init?.stateDir ?? '/'))).toBe(false);
  });

  it('rejects, naming the call, when a call is answered with an error', async () => {
    const failing = (): PluginDefinition =>
      plugin([], {
        handlers: {
          'vm/create': () => {
            throw new Error('no room');
          },
        },
      });
    await expect(rehearse(recorder().serve, { definition: failing, calls: [{ method: 'vm/create', params: { vmId: 'a', config: {} } }] })).rejects.toThrow(
      /the rehearsal's vm\/create failed: no room/,
    );
  });

  it('rejects when the handshake fails, before any call is sent', async () => {
    const calls: string[] = [];
    const def = (): PluginDefinition =>
      plugin(calls, {
        onInitialize: () => {
          throw new Error('cannot set up');
        },
      });
    await expect(rehearse(recorder().serve, { definition: def, calls: [{ method: 'vm/check', params: { vmId: 'a' } }] })).rejects.toThrow(
      /the rehearsal's initialize failed: .*cannot set up/,
    );
    expect(calls).toEqual([]);
  });

  it('plays the handshake alone, on a definition of the SDK\'s own, when the plugin gives no rehearsal', async () => {
    const { serve, sessions } = recorder();
    await rehearse(serve, undefined);
    expect(sessions).toEqual([{ plugin: 'rehearsal', closed: true }]);
  });
});
