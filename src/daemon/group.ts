import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/** A group entry as getent or /etc/group prints it: name:password:gid:members. */
const GROUP_LINE = /^([^:\n]+):[^:\n]*:(\d+):[^\n]*$/;
/** getent's answer for one group is one line; more than this is not a group entry. */
const MAX_GETENT_BYTES = 64 * 1024;

function getent(name: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('getent', ['group', name], { maxBuffer: MAX_GETENT_BYTES, timeout: 5_000 }, (err, stdout) => resolve(err ? undefined : stdout));
  });
}

function gidIn(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    const m = GROUP_LINE.exec(line.trim());
    if (m && (m[1] === name || m[2] === name)) return Number(m[2]);
  }
  return undefined;
}

/**
 * The id of a group by name (or number), as the system resolves it: getent (NSS: files, LDAP, ...), else /etc/group
 * where getent is missing. Undefined when there is no such group.
 */
export async function groupId(name: string): Promise<number | undefined> {
  if (name === '' || name.includes(':') || name.includes('\n')) return undefined;
  const fromNss = await getent(name);
  if (fromNss !== undefined) return gidIn(fromNss, name);
  const etc = await readFile('/etc/group', 'utf8').catch(() => '');
  return gidIn(etc, name);
}
