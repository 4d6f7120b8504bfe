import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { METHOD_NAMES } from 'hvplug/protocol';

const root = join(import.meta.dirname, '../..');
/** Where no code may name a method: what a method means to them is a field of the method table. */
const SCANNED = ['src/shim', 'src/core', 'src/plugin-sdk', 'src/errors', 'src/transport', 'src/proc', 'src/daemon'];
/** Files elsewhere held to the same: the conformance lifecycle checks take their methods from the state machine. */
const SCANNED_FILES = ['src/conformance/checks/lifecycle.ts'];
/** file → the method names it may still spell out, and why. Empty: nothing outside the table names a method. */
const ALLOWED: Record<string, readonly string[]> = {};

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Every quoted occurrence ('x', "x" or `x`) of a method name in the text. */
function methodLiterals(text: string): string[] {
  return METHOD_NAMES.filter((m) => ['\'', '"', '`'].some((q) => text.includes(`${q}${m}${q}`)));
}

describe('method names', () => {
  it('appear in src/shim, src/core, src/plugin-sdk, src/errors, src/transport and src/proc only through the method table', async () => {
    const found: string[] = [];
    for (const dir of SCANNED) {
      for (const file of await files(dir)) {
        const allowed = ALLOWED[file] ?? [];
        for (const m of methodLiterals(await readFile(join(root, file), 'utf8'))) if (!allowed.includes(m)) found.push(`${file}: '${m}'`);
      }
    }
    expect(found).toEqual([]);
  });

  it(`appear in ${SCANNED_FILES.join(', ')} only through the method table`, async () => {
    const found: string[] = [];
    for (const file of SCANNED_FILES) for (const m of methodLiterals(await readFile(join(root, file), 'utf8'))) found.push(`${file}: '${m}'`);
    expect(found).toEqual([]);
  });

  it('the scan sees a literal when there is one', () => {
    expect(methodLiterals(`if (method === 'device/add') return;`)).toEqual(['device/add']);
    expect(methodLiterals('call("vm/delete")')).toEqual(['vm/delete']);
    expect(methodLiterals(`'did not answer initialize'`)).toEqual([]);
  });
});
