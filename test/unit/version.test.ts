import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HOST_VERSION } from '../../src/core/version.js';

describe('the host version', () => {
  it('is the package version, as plugins are told at initialize', () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')) as { version: string };
    expect(HOST_VERSION).toBe(pkg.version);
  });
});
