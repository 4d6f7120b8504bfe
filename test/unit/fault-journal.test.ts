import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readJournal } from '../fault-model.js';
import { removeTempDirs, tempDir } from '../helpers.js';

afterAll(removeTempDirs);

describe("the fault test's journal", () => {
  it('drops an entry its writer was killed in the middle of, and reads the next writer\'s entry appended to it', async () => {
    // A SIGKILL between the pages of one write(2) leaves part of a line; the next host's append follows it unbroken.
    const file = join(await tempDir(), 'journal.ndjson');
    const whole = JSON.stringify({ t: 'send', n: 1, vmId: 'a', op: 'start', host: 10 });
    const torn = JSON.stringify({ t: 'ok', n: 1, vmId: 'a', op: 'start', status: 'running', host: 10 }).slice(0, 30);
    const next = JSON.stringify({ t: 'plugin', pid: 42, host: 11 });
    writeFileSync(file, `${whole}\n${torn}${next}\n`);
    const { entries, offset } = readJournal(file, 0);
    expect(entries).toEqual([JSON.parse(whole), JSON.parse(next)]);
    expect(offset).toBe(Buffer.byteLength(`${whole}\n${torn}${next}\n`));
  });
});
