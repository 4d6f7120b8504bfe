import { servePlugin } from 'hvplug/plugin-sdk';
import { cloudHypervisorPlugin } from './plugin.js';

servePlugin(cloudHypervisorPlugin());
