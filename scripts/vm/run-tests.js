#!/usr/bin/env node
/**
 * Kernel-VM test runner: runs compiled test files inside Debian's stock kernel under qemu
 * (scripts/vm/vmrun.sh), for kernel features the host kernel lacks (IPVS now, WireGuard next).
 *
 * A test file opts in by declaring, in its .ts source,
 *     export const KERNEL_REQUIRES = ['ip_vs', 'ip_vs_rr'];
 * (kernel modules). scripts/test-all.js routes such files here instead of the host's
 * integration suite. All of them run in ONE boot: the guest loads the union of the
 * modules, runs the files one after the other with the project's own Node
 * (node_modules/.bin/node; each file prints its own TAP) and the checkout read-only over 9p (RAM overlay on top), and
 * writes the TAP into the job dir, which is 9p-shared read-write with the host.
 *
 * Output: that TAP on stdout (guest console on stderr). When the guest did not finish
 * (timeout, kernel panic, modprobe failure), the TAP is cut after the last
 * complete file and every file without a result gets `not ok - <file> # <reason>`, so a
 * VM failure is always a failing test, never a silent pass. Exit status 0 only when every
 * file passed inside the guest.
 *
 * usage: run-tests.js [--timeout=SECONDS] FILE...   (FILE = dist/.../x.test.js)
 *        run-tests.js --check                        (prints why the VM cannot run, exit 1)
 */
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const HERE = __dirname;
const CACHE = process.env.PODWIRE_VM_CACHE || '/var/cache/podwire-vm';

/** The modules a test file's source declares (KERNEL_REQUIRES), or null when it declares none. */
function kernelRequires(distFile) {
  const src = path.join(ROOT, distFile.replace(/^dist[/\\]/, '').replace(/\.js$/, '.ts'));
  let text;
  try {
    text = fs.readFileSync(src, 'utf8');
  } catch {
    return null;
  }
  const m = /export\s+const\s+KERNEL_REQUIRES\s*(?::[^=]*)?=\s*\[([^\]]*)\]/.exec(text);
  if (!m) return null;
  return [...m[1].matchAll(/['"]([A-Za-z0-9_-]+)['"]/g)].map((x) => x[1]);
}

/**
 * The per-file time limit a test file's source declares (`export const KERNEL_VM_TIMEOUT = 240;`,
 * seconds), for files that start real daemons (podwired loads in ~15 s under TCG), or `dflt`.
 */
function fileTimeout(distFile, dflt) {
  const src = path.join(ROOT, distFile.replace(/^dist[/\\]/, '').replace(/\.js$/, '.ts'));
  let text = '';
  try {
    text = fs.readFileSync(src, 'utf8');
  } catch {
    return dflt;
  }
  const m = /export\s+const\s+KERNEL_VM_TIMEOUT\s*(?::[^=]*)?=\s*(\d+)/.exec(text);
  return m ? Math.max(dflt, Number(m[1])) : dflt;
}

/** Splits test files into those for the host and those for the VM (with the union of modules). */
function routeTests(files) {
  const host = [];
  const vm = [];
  const modules = new Set();
  for (const f of files) {
    const req = kernelRequires(f);
    if (req === null) host.push(f);
    else {
      vm.push(f);
      for (const m of req) modules.add(m);
    }
  }
  return { host, vm, modules: [...modules].sort() };
}

/**
 * Can the VM run here? Runs scripts/vm/setup.sh --no-install (idempotent, ~0.3 s when the
 * cache is ready; it downloads and prepares the kernel on first use). {ok, reason}.
 */
function vmAvailability() {
  if (process.platform !== 'linux' || process.arch !== 'x64') return { ok: false, reason: `needs linux/x64 (this is ${process.platform}/${process.arch})` };
  if (process.getuid && process.getuid() !== 0) return { ok: false, reason: `needs root (setup writes ${CACHE})` };
  const r = spawnSync('bash', [path.join(HERE, 'setup.sh'), '--no-install'], { encoding: 'utf8', env: { ...process.env, PODWIRE_VM_CACHE: CACHE } });
  if (r.status === 0) return { ok: true, reason: (r.stdout || '').trim() };
  const msg = `${r.stderr || ''}${r.stdout || ''}`.trim().split('\n').filter(Boolean).slice(-3).join(' / ');
  return { ok: false, reason: `scripts/vm/setup.sh failed (exit ${r.status}): ${msg || 'no output'}` };
}

const POINT = /^(not )?ok (\d+)(?: - ([^#]*?))?\s*(#.*)?$/;

/** The guest's TAP made complete: cut after the last top-level point, a `not ok` for each file without a result. */
function completeTap(tap, files, reason) {
  const lines = tap.split('\n');
  let keep = 0;
  let last = 0;
  const done = new Set();
  for (let i = 0; i < lines.length; i++) {
    const m = POINT.exec(lines[i]);
    if (m) {
      keep = i + 1;
      last = Number(m[2]);
      if (m[3]) done.add(m[3].trim());
    }
  }
  const out = lines.slice(0, keep).filter((l) => !/^1\.\.\d+/.test(l));
  if (!out.length || !/^TAP version/.test(out[0])) out.unshift('TAP version 14');
  let n = last;
  for (const f of files) {
    if (done.has(f)) continue;
    n++;
    out.push(`not ok ${n} - ${f}`, '  ---', `  message: ${JSON.stringify(`kernel VM: ${reason}`)}`, '  ...');
  }
  out.push(`1..${n}`);
  return `${out.join('\n')}\n`;
}

/**
 * Boots the VM once for `files`. Resolves {code, tap, reason, seconds}; `tap` is complete
 * (see completeTap). onConsole gets the guest console output.
 */
function runInVm(files, modules, { timeoutSec = 0, perFileSec = 150, onConsole = () => {} } = {}) {
  // boot + module loading take ~5-20 s; each file gets perFileSec inside the guest
  const limits = files.map((f) => fileTimeout(f, perFileSec));
  timeoutSec ||= 120 + limits.reduce((a, b) => a + b, 0);
  return new Promise((resolve) => {
    const started = Date.now();
    const job = fs.mkdtempSync(path.join(os.tmpdir(), 'pwv-vmjob-'));
    const node = path.join(ROOT, 'node_modules', '.bin', 'node');
    const q = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
    // Each file runs directly under node (it prints TAP itself): `tap run` costs ~2 min more
    // under TCG (its loaders and process tree), a direct run about 8 s per file. The files'
    // TAP is wrapped the way `tap run` does it (one `# Subtest: <file>` + `ok N - <file>` each)
    // and appended to out.tap file by file, so a guest killed mid-run still leaves complete files.
    const nodeBin = q(fs.existsSync(node) ? node : process.execPath);
    const script = [
      'set +e',
      `export TAP_TIMEOUT=${Math.max(perFileSec, ...limits)} PODWIRE_IN_VM=1 PODWIRE_VM_MODULES=${q(modules.join(','))} PATH=${q(path.join(ROOT, 'node_modules', '.bin'))}:$PATH`,
      // modules that create devices in the root netns when auto-loaded (dummy0, ifb0, ...): load them empty first
      'modprobe dummy numdummies=0 2>/dev/null; modprobe ifb numifbs=0 2>/dev/null',
      'up() { cut -d" " -f1 /proc/uptime; }',
      'echo "podwire-vm: guest kernel $(uname -r), tests start at uptime $(up)s"',
      'OUT=/netvm-job/out.tap; echo "TAP version 14" > $OUT; n=0; all=0',
      `for ft in ${files.map((f, i) => q(`${f}|${limits[i]}`)).join(' ')}; do`,
      '  f=${ft%|*}; lim=${ft##*|}; n=$((n+1)); t0=$(up)',
      `  timeout -k 5 $lim ${nodeBin} "$f" > /netvm-job/file.tap 2>> /netvm-job/out.stderr; rc=$?`,
      '  { echo "# Subtest: $f"; grep -v "^TAP version" /netvm-job/file.tap | sed "s/^/    /"',
      '    if [ $rc = 0 ]; then echo "ok $n - $f # time=$(awk "BEGIN{print ($(up)-$t0)*1000}")ms"',
      '    else all=1; echo "not ok $n - $f"; echo "  ---"',
      `      if [ $rc = 124 ] || [ $rc = 137 ]; then echo "  message: \"kernel VM: timed out after \${lim}s\""; else echo "  message: \"exited with $rc\""; fi`,
      '      echo "  ..."; fi; } >> $OUT',
      '  echo "podwire-vm: $f exit $rc at uptime $(up)s"',
      'done',
      'echo "1..$n" >> $OUT',
      'tail -c 4000 /netvm-job/out.stderr',
      'exit $all',
    ].join('\n');
    fs.writeFileSync(path.join(job, 'script.sh'), `${script}\n`);
    const args = [path.join(HERE, 'vmrun.sh'), '-J', job, '-C', ROOT, '-t', String(timeoutSec)];
    if (modules.length) args.push('-k', modules.join(','));
    args.push('bash /netvm-job/script.sh');
    const child = spawn('bash', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PODWIRE_VM_CACHE: CACHE } });
    let consoleTail = '';
    const onData = (b) => {
      onConsole(b);
      consoleTail = (consoleTail + b.toString()).slice(-2000);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('close', (code, signal) => {
      const seconds = (Date.now() - started) / 1000;
      let tap = '';
      try {
        tap = fs.readFileSync(path.join(job, 'out.tap'), 'utf8');
      } catch {
        /* no TAP at all */
      }
      let reason = '';
      if (code === 124 || signal || /qemu exit 124\)/.test(consoleTail)) reason = `timed out after ${timeoutSec}s (one boot for all files)`;
      else if (code === 125) reason = `the guest gave no exit status (crashed or never booted): ${consoleTail.trim().split('\n').slice(-3).join(' / ')}`;
      else if (code !== 0 && !tap) reason = `the guest failed before tap ran (exit ${code}): ${consoleTail.trim().split('\n').slice(-3).join(' / ')}`;
      else if (code !== 0) reason = `a test file failed inside the guest`;
      fs.rmSync(job, { recursive: true, force: true });
      resolve({ code: code ?? 1, tap: completeTap(tap, files, reason || 'no result'), reason, seconds });
    });
  });
}

module.exports = { kernelRequires, fileTimeout, routeTests, vmAvailability, runInVm, completeTap, CACHE };

if (require.main === module) {
  const argv = process.argv.slice(2);
  if (argv[0] === '--check') {
    const a = vmAvailability();
    process.stdout.write(`${a.ok ? 'ok' : 'unavailable'}: ${a.reason}\n`);
    process.exit(a.ok ? 0 : 1);
  }
  let timeoutSec = 0;
  const files = [];
  for (const a of argv) {
    if (/^--timeout=\d+$/.test(a)) timeoutSec = Number(a.split('=')[1]);
    else files.push(a);
  }
  const { modules } = routeTests(files);
  runInVm(files, modules, { timeoutSec, onConsole: (b) => process.stderr.write(b) }).then((r) => {
    process.stdout.write(r.tap);
    if (r.reason) process.stderr.write(`run-tests: ${r.reason}\n`);
    process.stderr.write(`run-tests: one boot, ${r.seconds.toFixed(1)}s wall\n`);
    process.exitCode = r.code === 0 ? 0 : 1;
  });
}
