import * as z from 'zod';
import type { InitializeResult } from 'hvplug/protocol';
import { PluginSpec } from '../core/index.js';
import { flagSet } from './args.js';
import { defineCommand } from './command.js';
import { EXIT_OK } from './errors.js';
import { table, wrap } from './output.js';
import { safeLine as s } from './safe-text.js';

const yesNo = (b: boolean): string => (b ? 'yes' : 'no');

/** The handshake as people read it: identity first, then what the plugin can do. Every string from the plugin goes through s(). */
export function renderHandshake(info: InitializeResult, spec: { command?: string; connect?: string; source: string }): string {
  const caps = info.capabilities;
  const lines = [s(`${info.plugin.name} ${info.plugin.version} by ${info.plugin.vendor}`)];
  if (info.plugin.description) lines.push(`  ${s(info.plugin.description)}`);
  lines.push('');
  const head: string[][] = [
    ['protocol', s(info.protocolVersion)],
    spec.connect === undefined ? ['command', s(`${spec.command ?? '-'} (${spec.source})`)] : ['connect', s(`${spec.connect} (${spec.source})`)],
    ['consoles', caps.consoleKinds.join(', ') || '-'],
    ['rate limiter', caps.rateLimiter ? 'built in' : 'no'],
  ];
  lines.push(table(head));
  lines.push('', `methods (${caps.methods.length})`, `  ${wrap([...caps.methods].sort().map(s), 96, '  ')}`);
  const devices = Object.entries(caps.devices);
  lines.push('', 'devices');
  if (devices.length === 0) lines.push('  none');
  else lines.push(table([['TYPE', 'COLD', 'HOT', 'UNPLUG'], ...devices.map(([t, d]) => [t, yesNo(d.coldplug), yesNo(d.hotplug), yesNo(d.hotunplug)])], '  '));
  const machines = Object.entries(caps.machines);
  lines.push('', 'machines');
  if (machines.length === 0) lines.push('  (not declared)');
  else lines.push(table([['MACHINE', 'HOTPLUG'], ...machines.map(([m, v]) => [s(m), yesNo(v.hotplug)])], '  '));
  const extensions = Object.entries(caps.extensions);
  lines.push('', 'extensions');
  if (extensions.length === 0) lines.push('  none');
  else lines.push(table(extensions.map(([name, e]) => [s(name), s(e.summary ?? '')]), '  '));
  return lines.join('\n');
}

export const inspectCommand = defineCommand({
  name: 'inspect',
  summary: 'start a plugin and print its handshake and capabilities',
  description:
    'Starts the plugin, prints what it answered at initialize (name, version, vendor, the negotiated protocol version, ' +
    'its capabilities: methods, devices with cold-plug/hot-plug/hot-unplug, machines, extensions), then shuts it down.',
  flags: { json: { type: 'boolean', help: 'the whole handshake as one JSON object' } },
  positionals: [{ name: 'plugin', required: true, help: 'the plugin name, as `hvplug plugins` lists it' }],
  options: z.object({ plugin: PluginSpec.shape.name, json: flagSet() }),
  async action({ plugin, json }, ctx) {
    const host = ctx.openHost();
    try {
      const spec = await host.catalog.resolve(plugin);
      const { info } = await host.hypervisor(plugin);
      const doc = {
        plugin: info.plugin,
        protocolVersion: info.protocolVersion,
        capabilities: info.capabilities,
        configSchema: info.configSchema,
        command: spec.command,
        connect: spec.connect,
        args: spec.args,
        source: spec.source,
        isolation: spec.isolation,
      };
      ctx.output(json).document(doc, () => renderHandshake(info, spec));
    } finally {
      await host.close();
    }
    return EXIT_OK;
  },
});
