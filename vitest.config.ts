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
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Tests mirror the source: host-side ones in test/, a plugin's beside it in plugins/<name>/test/. Unit tests
    // need no build and run in seconds (npm run test:unit); integration tests spawn the built plugins and CLI.
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts', 'plugins/*/test/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'plugins/*/test/integration/**/*.test.ts'],
          globalSetup: ['test/global-setup.ts'],
        },
      },
    ],
    // CI also keeps a machine-readable result, from which .ci/run prints the closing count.
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: '.ci-results.json' },
  },
});
