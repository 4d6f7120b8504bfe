import { servePlugin } from 'hvplug/plugin-sdk';
import { examplePlugin } from './plugin.js';

servePlugin(examplePlugin());
