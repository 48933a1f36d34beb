#!/usr/bin/env node
// Builds every Node-API addon / helper executable under native/ that has a binding.gyp.
// Runs from `npm ci` (the root package's install script), so a fresh clone needs no manual step.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..', 'native');
const dirs = [root, ...fs.readdirSync(root, { withFileTypes: true })
  .filter((d) => d.isDirectory() && d.name !== 'build' && d.name !== 'src')
  .map((d) => path.join(root, d.name))]
  .filter((d) => fs.existsSync(path.join(d, 'binding.gyp')));
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
// Build against the running Node's own headers (<prefix>/include/node). Without --nodedir node-gyp tries
// to download headers, and these machines reach no download site.
const prefix = path.resolve(path.dirname(process.execPath), '..');
const nodedirArgs = fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
for (const dir of dirs) {
  process.stderr.write(`building native: ${path.relative(process.cwd(), dir) || dir}\n`);
  execFileSync(process.execPath, [gyp, 'rebuild', ...nodedirArgs, `--directory=${dir}`], { stdio: 'inherit' });
}
