import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (p: string): string => fileURLToPath(new URL(`./src/${p}`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: [
      { find: /^hvplug\/protocol$/, replacement: src('protocol/index.ts') },
      { find: /^hvplug\/transport$/, replacement: src('transport/index.ts') },
      { find: /^hvplug\/plugin-sdk$/, replacement: src('plugin-sdk/index.ts') },
      { find: /^hvplug\/conformance$/, replacement: src('conformance/index.ts') },
      { find: /^hvplug$/, replacement: src('core/index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    // CI also keeps a machine-readable result, from which .ci/run prints the closing count.
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: '.ci-results.json' },
  },
});
