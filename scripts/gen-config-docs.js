#!/usr/bin/env node
/**
 * Regenerates the option tables of docs/configuration.md from the option table and the
 * built-in components' sections (src/daemon/config.ts `configDocsTables`), between the
 * BEGIN/END GENERATED markers. Run after `tsc`: `node scripts/gen-config-docs.js`
 * (`--check` exits 1 when the document is out of date instead of writing it). The unit
 * test in src/daemon/config.test.ts fails when the document drifts.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const { configDocsTables, DOCS_BEGIN, DOCS_END } = require(path.join(root, 'dist/src/daemon/config.js'));
const file = path.join(root, 'docs/configuration.md');
const doc = fs.readFileSync(file, 'utf8');
const a = doc.indexOf(DOCS_BEGIN);
const b = doc.indexOf(DOCS_END);
if (a < 0 || b < a) {
  process.stderr.write(`gen-config-docs: ${file} has no ${DOCS_BEGIN} ... ${DOCS_END} block\n`);
  process.exit(1);
}
const next = `${doc.slice(0, a + DOCS_BEGIN.length)}\n${configDocsTables()}${doc.slice(b)}`;
if (process.argv.includes('--check')) {
  if (next !== doc) {
    process.stderr.write('gen-config-docs: docs/configuration.md is out of date; run node scripts/gen-config-docs.js\n');
    process.exit(1);
  }
  process.exit(0);
}
if (next !== doc) fs.writeFileSync(file, next);
process.stdout.write(next !== doc ? 'docs/configuration.md updated\n' : 'docs/configuration.md up to date\n');
