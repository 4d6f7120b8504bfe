#!/usr/bin/env node
// Rewrites the generated reference of docs/plugin-authors.md (between its markers) from the method table,
// the notifications, the error data and the state machine. Reads the build: run `npm run build:ts` first.
// test/unit/docs-reference.test.ts fails while the committed guide differs from what this writes.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withReference } from '../dist/src/protocol/reference.js';

const guide = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'plugin-authors.md');
const before = readFileSync(guide, 'utf8');
const after = withReference(before);
if (after !== before) writeFileSync(guide, after);
console.log(after === before ? `${guide}: up to date` : `${guide}: reference rewritten`);
