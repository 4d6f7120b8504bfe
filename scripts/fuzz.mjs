// `npm run fuzz`: bundles the fuzz runner (test/fuzz/main.ts, TypeScript) and runs it in a node with
// --expose-gc, so that its heap figures are taken after a collection. Arguments pass through:
//   npm run fuzz -- --seed 123 --runs 100000 --side host
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { build } from 'esbuild';
import { root } from './bundle.mjs';

const outfile = join(root, 'dist/fuzz/main.mjs');
await build({
  entryPoints: [join(root, 'test/fuzz/main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // Dependencies load from node_modules as the host loads them; only the project's own sources are bundled.
  packages: 'external',
  alias: {
    hvplug: join(root, 'src/core/index.ts'),
    'hvplug/protocol': join(root, 'src/protocol/index.ts'),
    'hvplug/plugin-sdk': join(root, 'src/plugin-sdk/index.ts'),
    'hvplug/transport': join(root, 'src/transport/index.ts'),
  },
  sourcemap: 'inline',
  logLevel: 'error',
});
const r = spawnSync(process.execPath, ['--expose-gc', '--enable-source-maps', outfile, ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
