import { servePlugin } from 'hvplug/plugin-sdk';
import { qemuPlugin } from './plugin.js';

servePlugin(qemuPlugin());
