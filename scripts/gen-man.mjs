#!/usr/bin/env node
// Writes dist/man/hvplug.1, the manual page package.json's "man" ships, from the command table tsc has just built:
// the page `hvplug man` prints. Part of build:ts; test/integration/cli-man.test.ts holds the two equal.
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { root } from './bundle.mjs';

const { allCommands } = await import(pathToFileURL(join(root, 'dist/src/cli/commands.js')).href);
const { manPage } = await import(pathToFileURL(join(root, 'dist/src/cli/man.js')).href);
const dir = join(root, 'dist/man');
await mkdir(dir, { recursive: true });
// Written beside and renamed: a reader sees the old page or the new one.
const tmp = join(dir, `hvplug.1.${process.pid}.tmp`);
await writeFile(tmp, manPage(await allCommands()));
await rename(tmp, join(dir, 'hvplug.1'));
