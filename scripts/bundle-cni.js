#!/usr/bin/env node
// Bundles the in-process CNI plugin (tsc's dist/src/cni-plugin/main.js and everything it
// requires, the netlink package's struct codecs included) into one file,
// dist/cni/podwire-cni.js, with esbuild. Every pod start pays for loading the plugin when
// podwired is down; one file is one lookup, one read and one code-cache entry instead of
// ~50 resolutions, stats, realpaths and package.json reads (docs/cni.md, "Start-up").
//
// Beside it, podwire-cni.inputs.json lists every input with its size and mtime. main.js
// uses the bundle only while all of them are unchanged, so a `tsc` run without this step
// (or an edited file) never runs stale code: it falls back to the separate modules.
// Runs after tsc in `npm run build:ts` (and so in `npm test`, `prepare`, ...).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const entry = path.join(root, 'dist', 'src', 'cni-plugin', 'main.js');
const outDir = path.join(root, 'dist', 'cni');
const out = path.join(outDir, 'podwire-cni.js');
const inputsFile = path.join(outDir, 'podwire-cni.inputs.json');

function main() {
  let esbuild;
  try {
    esbuild = require('esbuild');
  } catch (err) {
    // A production install without devDependencies: the plugin runs from the separate modules.
    process.stderr.write(`bundle-cni: esbuild not installed, no bundle (${err.message.split('\n')[0]})\n`);
    fs.rmSync(inputsFile, { force: true });
    return 0;
  }
  if (!fs.existsSync(entry)) {
    process.stderr.write(`bundle-cni: ${entry} missing; run tsc first\n`);
    return 1;
  }
  fs.mkdirSync(outDir, { recursive: true });
  // The inputs file goes first, so a bundle that fails half-way is never taken as fresh.
  fs.rmSync(inputsFile, { force: true });
  const result = esbuild.buildSync({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    outfile: out,
    metafile: true,
    absWorkingDir: root,
    // The .node addons are loaded by path at run time (src/kernel/native.ts); nothing else is external.
    logLevel: 'warning',
    legalComments: 'none',
  });
  const inputs = Object.keys(result.metafile.inputs).map((rel) => {
    const file = path.resolve(root, rel);
    const st = fs.statSync(file);
    return [path.relative(outDir, file), st.size, st.mtimeMs];
  });
  const st = fs.statSync(out);
  fs.writeFileSync(inputsFile, JSON.stringify({ bundle: [path.basename(out), st.size, st.mtimeMs], inputs }) + '\n');
  process.stdout.write(`bundle-cni: ${path.relative(root, out)} (${Math.round(st.size / 1024)} KB, ${inputs.length} modules)\n`);
  return 0;
}

process.exitCode = main();
