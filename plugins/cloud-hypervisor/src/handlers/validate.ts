// config/validate: the config as the plugin will run it, with what it will do differently as warnings,
// or InvalidConfig naming what Cloud Hypervisor cannot do.
import { errors, type Handlers } from 'hvplug/plugin-sdk';
import { agentFor, configIssues, configWarnings } from '../config-map.js';
import { parseOptions } from '../settings.js';
import type { Registry } from '../registry.js';

export function validateHandlers(reg: Registry): Handlers {
  return {
    'config/validate': async ({ config }) => {
      const { options, issues } = parseOptions(config.plugin);
      const all = [...configIssues(config), ...issues];
      if (all.length) throw errors.invalidConfig(all);
      const warnings = configWarnings(config);
      const agent = agentFor(config.devices, options, reg.paths('vm'));
      if (agent) warnings.push(`the plugin adds a vsock device (guest CID ${agent.cid}) for an agent on port ${agent.port}: see vm/agentSocket`);
      return {
        config: {
          ...config,
          vcpus: { boot: config.vcpus.boot, max: config.vcpus.max ?? config.vcpus.boot },
          memory: { ...config.memory, maxMiB: config.memory.maxMiB ?? config.memory.sizeMiB },
        },
        warnings,
      };
    },
  };
}
