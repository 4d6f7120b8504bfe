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
    // Two files at a time on the 2-core CI machine: integration tests mostly wait on child processes and guests
    // (the suite used ~40% of both cores with two workers), so the run took 700 s against 1381 s with vitest's
    // default of one worker there (cores - 1). Each file's deadlines are meant to hold on a loaded machine.
    maxWorkers: 2,
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
