import { execFile } from 'node:child_process';
import { open } from 'node:fs/promises';

/** A group or passwd entry as getent or /etc/group, /etc/passwd print it: name:password:id:rest. */
const ENTRY_LINE = /^([^:\n]+):[^:\n]*:(\d+):[^\n]*$/;
/** getent's answer for one entry is one line; more than this is not an entry. */
const MAX_GETENT_BYTES = 64 * 1024;
/** The most of /etc/group or /etc/passwd read where there is no getent; an entry further down is not found. */
const MAX_ETC_BYTES = 1024 * 1024;

type Database = 'group' | 'passwd';

function getent(db: Database, key: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('getent', [db, key], { maxBuffer: MAX_GETENT_BYTES, timeout: 5_000 }, (err, stdout) => resolve(err ? undefined : stdout));
  });
}

async function etcFile(db: Database): Promise<string> {
  try {
    const fh = await open(`/etc/${db}`, 'r');
    try {
      const buf = Buffer.alloc(MAX_ETC_BYTES);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      return buf.toString('utf8', 0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

/** The entry whose name or id is `key`, as the system resolves it: getent (NSS: files, LDAP, ...), else /etc/<db>. */
async function entry(db: Database, key: string): Promise<{ name: string; id: number } | undefined> {
  if (key === '' || key.includes(':') || key.includes('\n')) return undefined;
  const text = (await getent(db, key)) ?? (await etcFile(db));
  for (const line of text.split('\n')) {
    const m = ENTRY_LINE.exec(line.trim());
    if (m && (m[1] === key || m[2] === key)) return { name: m[1]!, id: Number(m[2]) };
  }
  return undefined;
}

/** The name of a user by uid, as the system resolves it; undefined when it has none. */
export async function userName(uid: number): Promise<string | undefined> {
  return (await entry('passwd', String(uid)))?.name;
}

/**
 * The id of a group by name (or number), as the system resolves it: getent (NSS: files, LDAP, ...), else /etc/group
 * where getent is missing. Undefined when there is no such group.
 */
export async function groupId(name: string): Promise<number | undefined> {
  return (await entry('group', name))?.id;
}
