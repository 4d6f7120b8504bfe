import { readFile } from 'node:fs/promises';
import * as z from 'zod';

/**
 * Whether a check id is named by a selector: the id itself, a dotted prefix of it (`method.vm/pause`
 * names `method.vm/pause.valid` and `.invalid`; `device` names a whole group), `*` matching anything.
 */
export function matches(id: string, selector: string): boolean {
  const pattern = selector.trim();
  if (!pattern) return false;
  const re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join('.*')}(\\..*)?$`);
  return re.test(id);
}

export function selected(id: string, only: readonly string[] | undefined, skip: readonly string[] | undefined): boolean {
  if (only?.length && !only.some((s) => matches(id, s))) return false;
  return !skip?.some((s) => matches(id, s));
}

/** The selectors that name none of these check ids. */
export function unmatched(ids: readonly string[], selectors: readonly string[] | undefined): string[] {
  return (selectors ?? []).filter((s) => !ids.some((id) => matches(id, s)));
}

const IdList = z.array(z.string());

/**
 * An expected-failures file: a JSON list of check ids, or one id per line (blank lines and `#` comments
 * ignored).
 */
export function parseExpectedFailures(text: string): string[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) {
    const parsed = IdList.safeParse(JSON.parse(trimmed));
    if (!parsed.success) throw new Error('an expected-failures JSON file must be a list of check ids');
    return parsed.data.map((s) => s.trim()).filter(Boolean);
  }
  return trimmed
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean);
}

export async function readExpectedFailures(file: string): Promise<string[]> {
  return parseExpectedFailures(await readFile(file, 'utf8'));
}
