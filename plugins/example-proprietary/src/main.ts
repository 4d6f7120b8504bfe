import { startupSnapshot } from 'node:v8';
import { servePlugin } from 'hvplug/plugin-sdk';
import { examplePlugin } from './plugin.js';
import { ensureRuntimeDir } from './registry.js';

// While node builds the startup snapshot: the runtime-directory code run once on a directory that exists (which changes
// nothing), so that node's fs functions it calls are compiled in the snapshot. Otherwise each plugin process compiles
// them from node's sources at its initialize, and the pages of those sources it reads stay resident (~0.25 MiB of RSS).
if (startupSnapshot.isBuildingSnapshot()) ensureRuntimeDir(process.cwd());

servePlugin(examplePlugin());
