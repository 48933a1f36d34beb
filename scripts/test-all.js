#!/usr/bin/env node
/**
 * Podwire test runner (`npm test` = `tsc -p tsconfig.json && node scripts/test-all.js`).
 *
 *   1. unit tests:        dist/src/**\/*.test.js        (tap, --jobs=2)
 *   2. integration tests: dist/test-netns/**\/*.test.js (tap, --jobs=1: they share one kernel) — needs root
 *   3. kernel-VM tests:   the test-netns files whose source declares `export const KERNEL_REQUIRES = [...]`
 *      (kernel modules the host lacks, e.g. ip_vs): all in ONE boot of Debian's stock kernel under qemu
 *      (scripts/vm/run-tests.js). When the VM cannot run here (no qemu/kernel: scripts/install-vm.sh,
 *      not root, PODWIRE_VM=0) they are counted as skipped and the reason is printed; with --vm-only
 *      that is a failure.
 *
 * Prints each file's result, each suite's summary, the failures and the skip reasons, and as the
 * very last line exactly `N passed, N failed` (`, N skipped` when any). Exit status is non-zero
 * when anything failed, when not running as root (integration tests are part of the suite),
 * or when no test ran at all. Around the integration suite the root network namespace is
 * snapshotted before and after (the harness guard); when this process is not in the initial
 * network namespace that check is one failure with the reason, never "unchanged".
 *
 * Counting: one count per leaf test point (an assertion, or a skipped/empty subtest), the same
 * way tap's own summary counts; a test file or subtest that ends `not ok` without any failing
 * assertion of its own (a crash, a timeout) counts as one failure. The raw TAP of each suite is
 * kept in dist/test-results/<suite>.tap and its stderr in <suite>.stderr.
 *
 * Options: --unit-only, --netns-only (host integration only), --vm-only, --netns-jobs=N (default 1),
 * --verbose (echo raw TAP).
 * Only compiled test files whose .ts source still exists are run (no stale dist/ leftovers).
 * Plain JS on purpose: it must run without a build step of its own.
 */
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { Parser } = require('tap-parser');

const ROOT = path.resolve(__dirname, '..');
const DIST = path.join(ROOT, 'dist');
/** dist/test-results, or a temp dir when dist is not writable (e.g. a non-root run of a root-built tree). */
const RESULTS = (() => {
  const preferred = path.join(DIST, 'test-results');
  try {
    fs.mkdirSync(preferred, { recursive: true });
    fs.accessSync(preferred, fs.constants.W_OK);
    return preferred;
  } catch {
    return fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'podwire-test-results-'));
  }
})();
const VM = require('./vm/run-tests.js');
const TAP_BIN = path.join(path.dirname(require.resolve('tap/package.json', { paths: [ROOT] })), 'dist', 'esm', 'run.mjs');

function parseArgs(argv) {
  const o = { unit: true, netns: true, vm: true, netnsJobs: 1, verbose: false, vmOnly: false };
  for (const a of argv) {
    if (a === '--unit-only') o.netns = o.vm = false;
    else if (a === '--netns-only') o.unit = o.vm = false;
    else if (a === '--vm-only') {
      o.unit = o.netns = false;
      o.vmOnly = true;
    }
    else if (a === '--verbose') o.verbose = true;
    else if (/^--netns-jobs=\d+$/.test(a)) o.netnsJobs = Math.max(1, Number(a.split('=')[1]));
    else {
      process.stderr.write(`test-all: unknown option ${a}\n`);
      process.exit(2);
    }
  }
  return o;
}

/** dist/<dir>/**\/*.test.js whose <dir>/**\/*.test.ts source exists. */
function findTests(dir) {
  const distDir = path.join(DIST, dir);
  const found = [];
  const stale = [];
  const walk = (d) => {
    let entries;
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name.endsWith('.test.js')) {
        const rel = path.relative(DIST, p);
        const src = path.join(ROOT, rel.replace(/\.js$/, '.ts'));
        (fs.existsSync(src) ? found : stale).push(path.relative(ROOT, p));
      }
    }
  };
  walk(distDir);
  return { files: found.sort(), stale: stale.sort() };
}

function newStats() {
  return { pass: 0, fail: 0, skip: 0, todo: 0, points: 0 };
}

function addStats(a, b) {
  for (const k of Object.keys(a)) a[k] += b[k];
}

/**
 * Attach leaf counting to a tap-parser Parser (recursively through subtests).
 * Every leaf is counted at once in its own parser's stats and in all its ancestors' (so the
 * leaves of a subtest that never closes — its process was killed — still count).
 * onLeaf(result, kind, names) is called for each counted leaf; onFile(result, childStats, names)
 * for each top-level point (a test file) when given.
 */
function attach(parser, trail, onLeaf, onFile, ancestors = []) {
  const stats = newStats();
  const chain = [stats, ...ancestors];
  let pending = null; // { child, name } of the last subtest that has not been closed by a point yet
  const count = (r, kind, names) => {
    for (const s of chain) {
      s.points++;
      s[kind]++;
    }
    onLeaf(r, kind, names);
  };
  const kindOf = (r) => (r.skip ? 'skip' : r.todo ? 'todo' : r.ok ? 'pass' : 'fail');
  parser.on('child', (child) => {
    pending = { name: child.name, sub: attach(child, child.name ? [...trail, child.name] : trail, onLeaf, null, chain) };
  });
  parser.on('assert', (r) => {
    const names = [...trail, r.name];
    let sub = null;
    if (pending) {
      // tap closes a subtest with a point of the same name; a point with another name (tap's own
      // "timeout!" for an expired file) is a leaf of its own and the subtest stays unclosed.
      if (!pending.name || pending.name === r.name) sub = pending.sub;
      else if (onFile) onFile({ ok: pending.sub.stats.fail === 0, name: pending.name, skip: false }, pending.sub.stats, [...trail, pending.name]);
      pending = null;
    }
    if (sub) {
      // an empty subtest (skipped, or a file that planned 0) is a leaf of its own
      if (sub.stats.points === 0) count(r, kindOf(r), names);
      // not ok without a failing leaf inside: crash, timeout, bad plan -> one failure
      else if (!r.ok && !r.todo && !r.skip && sub.stats.fail === 0) count(r, 'fail', names);
      if (onFile) onFile(r, sub.stats, names);
    } else {
      count(r, kindOf(r), names);
      if (onFile) onFile(r, null, names);
    }
  });
  parser.on('bailout', (reason) => {
    count({ ok: false, name: `Bail out! ${reason}`, diag: null }, 'fail', [...trail, 'bailout']);
  });
  return { stats };
}

function fmtCounts(s) {
  return `${s.pass} passed, ${s.fail} failed${s.skip ? `, ${s.skip} skipped` : ''}${s.todo ? `, ${s.todo} todo` : ''}`;
}

function shortDiag(diag) {
  if (!diag || typeof diag !== 'object') return '';
  const keep = {};
  for (const k of ['found', 'wanted', 'diff', 'changes', 'expired', 'error', 'message', 'output', 'stderr', 'signal', 'exitCode', 'left', 'stack']) {
    if (diag[k] !== undefined) keep[k] = diag[k];
  }
  const at = diag.at && diag.at.fileName ? `${diag.at.fileName}:${diag.at.lineNumber}` : '';
  let s = at ? `at ${at}\n` : '';
  for (const [k, v] of Object.entries(keep)) {
    const text = typeof v === 'string' ? v : JSON.stringify(v, null, 2);
    s += `${k}: ${text.length > 2000 ? `${text.slice(0, 2000)}…` : text}\n`;
  }
  return s.trimEnd();
}

function runSuite(name, files, jobs, opts, argv = null) {
  return new Promise((resolve) => {
    const started = Date.now();
    fs.mkdirSync(RESULTS, { recursive: true });
    const tapOut = fs.createWriteStream(path.join(RESULTS, `${name}.tap`));
    const errOut = fs.createWriteStream(path.join(RESULTS, `${name}.stderr`));
    const failures = [];
    const skips = [];
    const parser = new Parser();
    const root = attach(
      parser,
      [],
      (r, kind, names) => {
        if (kind === 'fail') failures.push({ names, diag: r.diag });
        if (kind === 'skip') skips.push({ names, reason: typeof r.skip === 'string' ? r.skip : '' });
      },
      (r, childStats, names) => {
        const s = childStats ?? newStats();
        const mark = r.ok ? (r.skip ? 'skip' : 'ok  ') : 'FAIL';
        const detail = r.skip && typeof r.skip === 'string' ? ` — ${r.skip}` : ` (${fmtCounts(s)})`;
        process.stdout.write(`  ${mark} ${names.join(' > ')}${detail}\n`);
      },
    );
    const args = argv ?? [TAP_BIN, 'run', '--disable-coverage', '--reporter=tap', `--jobs=${jobs}`, ...files];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (b) => {
      tapOut.write(b);
      if (opts.verbose) process.stdout.write(b);
      parser.write(b);
    });
    child.stderr.on('data', (b) => {
      errOut.write(b);
      if (opts.verbose) process.stderr.write(b);
    });
    child.on('close', (code, signal) => {
      parser.end();
      tapOut.end();
      errOut.end();
      const stats = root.stats;
      if ((code !== 0 || signal) && stats.fail === 0) {
        stats.fail++;
        failures.push({ names: [`tap run (${name})`], diag: { message: `tap exited with ${signal ?? code}; see ${path.join(RESULTS, `${name}.stderr`)}` } });
      }
      resolve({ name, stats, failures, skips, files: files.length, seconds: (Date.now() - started) / 1000 });
    });
  });
}

/**
 * Snapshot the root netns with the compiled harness guard. Returns null when there is no compiled
 * guard, else { notRoot, check }: notRoot is the failure message when this process is not
 * (confirmed) in the initial network namespace — then "this process's namespace" is not the root
 * one and the guard's "unchanged" would mean nothing, so no snapshot is taken — and check() gives
 * the diff text or null.
 */
async function startSuiteGuard() {
  const guardJs = path.join(DIST, 'test-netns', 'harness', 'guard.js');
  if (!fs.existsSync(guardJs)) {
    process.stdout.write('  (no compiled harness guard; suite-level root-namespace check skipped)\n');
    return null;
  }
  const g = require(guardJs);
  const where = g.rootNetnsCheck();
  if (where.inRoot !== true) {
    const notRoot = g.notInRootNetnsMessage(where);
    process.stdout.write(`  FAIL ${notRoot}\n`);
    return { notRoot, check: async () => null };
  }
  const before = await g.snapshot(null);
  return {
    notRoot: null,
    check: async () => {
      const d = g.diffSnapshots(before, await g.snapshot(null));
      return d.length ? g.formatDiff(d, null) : null;
    },
  };
}

function printSuite(res) {
  if (res.skips.length) {
    process.stdout.write(`  skipped in ${res.name}:\n`);
    for (const s of res.skips) process.stdout.write(`    - ${s.names.join(' > ')}${s.reason ? `: ${s.reason}` : ''}\n`);
  }
  if (res.failures.length) {
    process.stdout.write(`  FAILURES in ${res.name}:\n`);
    for (const f of res.failures) {
      process.stdout.write(`    ✗ ${f.names.join(' > ')}\n`);
      const d = shortDiag(f.diag);
      if (d) process.stdout.write(`${d.replace(/^/gm, '        ')}\n`);
    }
  }
  process.stdout.write(`${res.name}: ${fmtCounts(res.stats)} in ${res.files} file(s), ${res.seconds.toFixed(1)}s (raw TAP: ${path.join(RESULTS, `${res.name}.tap`)})\n\n`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const total = newStats();
  let problems = [];
  process.stdout.write(`test-all: Node ${process.version} (${process.execPath})\n`);
  if (Number(process.versions.node.split('.')[0]) < 24) {
    process.stdout.write('test-all: Podwire runs on Node 24 LTS; run the suite with `npm test` (npm ci installs Node 24 as node_modules/.bin/node)\n');
    process.stdout.write('0 passed, 1 failed\n');
    process.exitCode = 1;
    return;
  }

  if (opts.unit) {
    const { files, stale } = findTests('src');
    process.stdout.write(`== unit tests (${files.length} files)\n`);
    if (stale.length) process.stdout.write(`  ignored stale compiled tests without a .ts source: ${stale.join(' ')}\n`);
    if (files.length) {
      const res = await runSuite('unit', files, 2, opts);
      printSuite(res);
      addStats(total, res.stats);
    } else process.stdout.write('unit: no test files\n\n');
  }

  const netnsTests = findTests('test-netns');
  const routed = VM.routeTests(netnsTests.files);
  if (opts.netns) {
    const { stale } = netnsTests;
    const files = routed.host;
    process.stdout.write(`== integration tests, network namespaces (${files.length} files, jobs=${opts.netnsJobs})\n`);
    if (stale.length) process.stdout.write(`  ignored stale compiled tests without a .ts source: ${stale.join(' ')}\n`);
    if (process.getuid && process.getuid() !== 0) {
      process.stdout.write('integration: NOT RUN — they need root (they create network namespaces). Run `sudo npm test`.\n\n');
      problems.push('integration tests need root and were not run');
    } else if (files.length) {
      const guard = await startSuiteGuard();
      const res = await runSuite('integration', files, opts.netnsJobs, opts);
      if (guard && guard.notRoot) {
        res.stats.fail++;
        res.stats.points++;
        res.failures.push({ names: ['root-namespace guard around the whole integration suite'], diag: { message: guard.notRoot } });
      } else if (guard) {
        // A second line of defence for test files that do not use labTest: the root namespace
        // must be the same after the whole suite as before it.
        const diff = await guard.check();
        if (diff) {
          res.stats.fail++;
          res.stats.points++;
          res.failures.push({ names: ['root-namespace guard around the whole integration suite'], diag: { message: diff } });
        } else process.stdout.write('  ok   root namespace unchanged across the whole integration suite\n');
      }
      printSuite(res);
      addStats(total, res.stats);
    } else process.stdout.write('integration: no test files\n\n');
  }

  if (opts.vm) {
    const files = routed.vm;
    process.stdout.write(`== kernel-VM tests (${files.length} files; modules ${routed.modules.join(',') || '-'}; one boot of Debian's kernel under qemu)\n`);
    let why = null;
    if (!files.length) why = null;
    else if (process.env.PODWIRE_VM === '0') why = 'PODWIRE_VM=0';
    else {
      const a = VM.vmAvailability();
      if (!a.ok) why = a.reason;
      else process.stdout.write(`  ${a.reason}\n`);
    }
    if (!files.length) process.stdout.write('kernel-vm: no test files\n\n');
    else if (why) {
      process.stdout.write(`kernel-vm: SKIPPED ${files.length} file(s) — the kernel VM cannot run here: ${why}\n`);
      process.stdout.write('  (install it with `sudo bash scripts/install-vm.sh`; see docs/testing.md)\n\n');
      total.skip += files.length;
      total.points += files.length;
      if (opts.vmOnly) problems.push(`kernel-VM tests could not run: ${why}`);
    } else {
      const res = await runSuite('kernel-vm', files, 1, opts, [path.join(__dirname, 'vm', 'run-tests.js'), ...files]);
      printSuite(res);
      addStats(total, res.stats);
    }
  }

  if (total.points === 0 || (opts.vmOnly && total.pass + total.fail === 0 && !problems.length)) problems.push('no test ran');
  for (const p of problems) process.stdout.write(`test-all: ${p}\n`);
  process.stdout.write(`${total.pass} passed, ${total.fail} failed${total.skip ? `, ${total.skip} skipped` : ''}\n`);
  process.exitCode = total.fail > 0 || problems.length > 0 ? 1 : 0;
}

module.exports = { attach, newStats, fmtCounts, findTests, startSuiteGuard };

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`test-all: ${e && e.stack ? e.stack : String(e)}\n`);
    process.stdout.write('0 passed, 1 failed\n');
    process.exitCode = 1;
  });
}
