// A plugin's command line as the SDK reads it: its own flags beside --listen's, parsed strictly once there is
// anything to parse, so a misspelled flag stops the plugin instead of being ignored.
import { describe, expect, it } from 'vitest';
import { listenOptionsFromArgv, parseCommandLine, UsageError } from 'hvplug/plugin-sdk';

describe('parseCommandLine', () => {
  it('a plugin without flags of its own on stdio ignores its arguments, as before', () => {
    expect(parseCommandLine(['whatever', '--x'])).toEqual({ listen: undefined, flags: {} });
  });

  it("gives a plugin's own flags on stdio, and refuses one it does not declare", () => {
    expect(parseCommandLine(['--tls-dir', '/etc/x'], ['tls-dir'])).toEqual({ listen: undefined, flags: { 'tls-dir': '/etc/x' } });
    expect(parseCommandLine([], ['tls-dir'])).toEqual({ listen: undefined, flags: { 'tls-dir': undefined } });
    expect(() => parseCommandLine(['--tls-dri', '/etc/x'], ['tls-dir'])).toThrow(UsageError);
    expect(() => parseCommandLine(['stray'], ['tls-dir'])).toThrow(UsageError);
  });

  it('refuses listen flags without --listen once it parses', () => {
    expect(() => parseCommandLine(['--cert', 'c.pem'], ['tls-dir'])).toThrow(/--cert: for a plugin started with --listen/);
  });

  it("reads --listen and the plugin's flags together", () => {
    const cl = parseCommandLine(['--listen', 'unix:/tmp/p.sock', '--tls-dir=/etc/x', '--runtime-dir', '/run/p'], ['tls-dir']);
    expect(cl.flags).toEqual({ 'tls-dir': '/etc/x' });
    expect(cl.listen).toMatchObject({ address: 'unix:/tmp/p.sock', runtimeDir: '/run/p' });
    // Without the plugin's declaration its flag is a mistake under --listen, as it always was.
    expect(() => listenOptionsFromArgv(['--listen', 'unix:/tmp/p.sock', '--tls-dir', '/etc/x'])).toThrow(UsageError);
  });

  it("a plugin flag named like one of the SDK's is a programming error, not a usage one", () => {
    const err = (() => {
      try {
        parseCommandLine([], ['cert']);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(UsageError);
  });
});
