/**
 * Tests of rootNetnsCheck(): is this process in the initial network namespace (init_net)?
 * The decision logic against fake /proc contents, then real processes: the runner (root), a child
 * in a scratch netns (not root), a child in a new PID namespace whose PID 1 sits in a scratch
 * netns (not root, although it shares PID 1's netns — the criterion the old check used), a child
 * in a new PID namespace in the root netns (root), and labTest / withLab / scripts/test-all.js
 * refusing to vouch for the root namespace from a scratch one. Nothing here changes the root
 * namespace: the children only read /proc.
 */
import t from 'tap';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import {
  exec,
  INIT_NET_INODE,
  isKernelThreadStat,
  labTest,
  rootNetnsCheck,
  selfNetnsInode,
  type RootNetnsCheck,
  type RootNetnsIo,
} from '../harness';

const PREFIX = 'pwg-init';
const GUARD_JS = join(__dirname, '..', 'harness', 'guard.js');
const HARNESS_JS = join(__dirname, '..', 'harness', 'index.js');
const TEST_ALL = join(__dirname, '..', '..', '..', 'scripts', 'test-all.js');
const CHILD = join(__dirname, 'fixtures', 'child.js');

// ---- the decision logic, against fake /proc contents ----------------------------------------

const KTHREADD_STAT = '2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3';
const USER_STAT = (comm: string): string => `2 (${comm}) S 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 3`;
const DYN = 0xf00000a1; // a dynamically numbered netns

function fakeIo(o: { self: number; pid2Stat?: string; pid2Net?: number; release?: string }): RootNetnsIo {
  const nsfs = 4;
  return {
    statNs: (p) => {
      if (p === '/proc/self/ns/net') return { dev: nsfs, ino: o.self };
      if (p === '/proc/2/ns/net' && o.pid2Net !== undefined) return { dev: nsfs, ino: o.pid2Net };
      throw Object.assign(new Error(`ENOENT ${p}`), { code: 'ENOENT' });
    },
    readFile: (p) => {
      if (p === '/proc/2/stat' && o.pid2Stat !== undefined) return o.pid2Stat;
      throw Object.assign(new Error(`ENOENT ${p}`), { code: 'ENOENT' });
    },
    release: () => o.release ?? '6.18.44',
  };
}

t.test('rootNetnsCheck decision logic', async (t) => {
  const c = (o: Parameters<typeof fakeIo>[0]): Pick<RootNetnsCheck, 'inRoot' | 'method'> => {
    const r = rootNetnsCheck(fakeIo(o));
    return { inRoot: r.inRoot, method: r.method };
  };
  t.same(c({ self: DYN, pid2Stat: KTHREADD_STAT, pid2Net: DYN }), { inRoot: true, method: 'kthreadd' }, 'same netns as kthreadd: root (any inode number, any kernel)');
  t.same(c({ self: DYN, pid2Stat: KTHREADD_STAT, pid2Net: DYN, release: '5.15.0' }), { inRoot: true, method: 'kthreadd' }, 'kthreadd also decides on old kernels');
  t.same(c({ self: 0xf00000b2, pid2Stat: KTHREADD_STAT, pid2Net: DYN }), { inRoot: false, method: 'kthreadd' }, 'other netns than kthreadd: not root');
  t.same(
    c({ self: 0xf00000b2, pid2Stat: USER_STAT('kthreadd'), pid2Net: 0xf00000b2 }),
    { inRoot: false, method: 'init-inode' },
    'a user process named kthreadd (no PF_KTHREAD) is not evidence; dynamic inode on >= 6.18: not root',
  );
  t.same(c({ self: INIT_NET_INODE, pid2Stat: USER_STAT('node') }), { inRoot: true, method: 'init-inode' }, 'no kernel thread visible, inode is PROC_NET_INIT_INO: root');
  t.same(c({ self: INIT_NET_INODE, release: '5.10.0' }), { inRoot: true, method: 'init-inode' }, 'PROC_NET_INIT_INO means init_net on any kernel');
  t.same(c({ self: DYN }), { inRoot: false, method: 'init-inode' }, '/proc/2 missing, dynamic inode on 6.18: not root');
  t.same(c({ self: DYN, release: '6.17.3' }), { inRoot: undefined, method: 'none' }, 'kernel without the fixed inode and no kthreadd: undecidable');
  t.same(c({ self: 4026531992, release: '6.1.0-13-amd64' }), { inRoot: undefined, method: 'none' }, 'the "usual" old init_net number 0xF0000098 is not trusted');
  t.same(c({ self: DYN, release: 'weird' }), { inRoot: undefined, method: 'none' }, 'unparsable release: undecidable');
  const u = rootNetnsCheck(fakeIo({ self: DYN, release: '6.6.0' }));
  t.match(u.detail, /6\.6\.0 < 6\.18/, 'the detail says why it cannot tell');

  t.ok(isKernelThreadStat(KTHREADD_STAT, 'kthreadd'), 'kthreadd stat: PF_KTHREAD set');
  t.notOk(isKernelThreadStat(USER_STAT('kthreadd'), 'kthreadd'), 'user process: PF_KTHREAD clear');
  t.notOk(isKernelThreadStat('2 (a) b) S 0 0 0 0 -1 2129984', 'kthreadd'), 'another comm');
  t.ok(isKernelThreadStat('7 (x) (y) S 0 0 0 0 -1 2129984', 'x) (y'), 'comm with parens and spaces is parsed after the last )');
  t.notOk(isKernelThreadStat('garbage', 'kthreadd'), 'garbage');
});

// ---- real processes -------------------------------------------------------------------------

/** A node one-liner printing rootNetnsCheck() and whether /proc/1 shares this netns. */
const PROBE = [
  '-e',
  `const g = require(${JSON.stringify(GUARD_JS)}); const fs = require('node:fs');` +
    `let pid1 = 'unreadable'; try { pid1 = fs.statSync('/proc/1/ns/net').ino === fs.statSync('/proc/self/ns/net').ino; } catch {}` +
    `console.log(JSON.stringify({ ...g.rootNetnsCheck(), pid1SharesNetns: pid1, pid: process.pid, ino: fs.statSync('/proc/self/ns/net').ino }));`,
];

interface ProbeResult extends RootNetnsCheck {
  pid1SharesNetns: boolean | 'unreadable';
  pid: number;
  ino: number;
}

async function probe(ns: string | null, wrapper: string[] = []): Promise<ProbeResult> {
  const r = await exec(ns, [...wrapper, process.execPath, ...PROBE], { timeoutMs: 30_000 });
  if (r.exitCode !== 0) throw new Error(`probe failed (${String(r.exitCode)}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ProbeResult;
}

const NEW_PIDNS = ['unshare', '--pid', '--fork', '--mount-proc'];

labTest('the test runner is in init_net (decided by kthreadd)', { prefix: PREFIX }, async (t) => {
  const c = rootNetnsCheck();
  t.equal(c.inRoot, true, 'inRoot', { detail: c.detail });
  t.equal(c.method, 'kthreadd', 'this procfs shows kernel threads');
  t.equal(selfNetnsInode(), statSync('/proc/2/ns/net').ino, 'same inode as kthreadd');
  const child = await probe(null);
  t.same([child.inRoot, child.method], [true, 'kthreadd'], 'a plain child process of the runner: root too');
});

labTest('a child in a scratch netns is not root', { prefix: PREFIX }, async (t, lab) => {
  const scratch = await lab.addNetns('scratch');
  const c = await probe(scratch);
  t.equal(c.inRoot, false, 'inRoot false', { detail: c.detail });
  t.equal(c.method, 'kthreadd', 'decided by kthreadd (visible in the host procfs)');
  t.not(c.ino, selfNetnsInode(), 'it really ran in another netns');
});

labTest('a new PID namespace whose PID 1 is inside a scratch netns does not fool it', { prefix: PREFIX }, async (t, lab) => {
  const scratch = await lab.addNetns('pidns');
  // netns first, then the PID namespace: PID 1 is unshare's child, in the scratch netns
  const a = await probe(scratch, NEW_PIDNS);
  t.equal(a.pid, 1, 'the probe is PID 1 of its own PID namespace (own /proc mounted)');
  t.equal(a.pid1SharesNetns, true, 'it shares PID 1\'s netns: the old criterion would have said "root"');
  t.equal(a.inRoot, false, 'rootNetnsCheck says: not root', { detail: a.detail });
  t.equal(a.method, 'init-inode', 'no kernel thread in that procfs: decided by the fixed init_net inode');

  // PID namespace first, then `ip netns exec`: same situation the other way round
  const b = await probe(null, [...NEW_PIDNS, 'ip', 'netns', 'exec', scratch]);
  t.equal(b.pid1SharesNetns, true, 'PID 1 (ip netns exec, exec\'d into the probe) shares its netns');
  t.equal(b.inRoot, false, 'not root either', { detail: b.detail });

  // a new PID namespace without its own /proc: kthreadd is still visible and decides
  const c = await probe(scratch, ['unshare', '--pid', '--fork']);
  t.same([c.inRoot, c.method], [false, 'kthreadd'], 'host procfs in a new PID namespace: kthreadd decides, not root');
});

labTest('a new PID namespace in the root netns is still root', { prefix: PREFIX }, async (t) => {
  const c = await probe(null, NEW_PIDNS);
  t.equal(c.pid, 1, 'PID 1 of its own PID namespace');
  t.same([c.inRoot, c.method], [true, 'init-inode'], 'root, by the fixed init_net inode', { detail: c.detail });
});

labTest('labTest, withLab and scripts/test-all.js refuse to vouch from a scratch netns', { prefix: PREFIX }, async (t, lab) => {
  const scratch = await lab.addNetns('runner');

  const lt = await exec(scratch, [process.execPath, CHILD, 'labtest-plain', 'pwg-init-child'], { timeoutMs: 60_000 });
  t.match(lt.stdout, /not ok \d+ - runner is in the initial network namespace/, 'labTest fails with a clear assertion');
  t.match(lt.stdout, /not in the initial \(root\) network namespace/, 'and says why');
  t.notMatch(lt.stdout, /# BODY RAN/, 'the body did not run');
  t.notMatch(lt.stdout, /^\s*(not )?ok \d+ - root namespace unchanged/m, 'no "root namespace unchanged" assertion at all');
  t.not(lt.exitCode, 0, 'the tap process exits non-zero');

  const wl = await exec(
    scratch,
    [process.execPath, '-e', `require(${JSON.stringify(HARNESS_JS)}).withLab('pwg-init-wl', async () => 1).then(() => console.log('RAN'), (e) => console.log('REFUSED ' + e.message))`],
    { timeoutMs: 30_000 },
  );
  t.match(wl.stdout, /^REFUSED lab: the test runner is not in the initial \(root\) network namespace/m, 'withLab throws before running');

  const ta = await exec(
    scratch,
    [process.execPath, '-e', `require(${JSON.stringify(TEST_ALL)}).startSuiteGuard().then((g) => console.log(JSON.stringify({ notRoot: g && g.notRoot })))`],
    { timeoutMs: 30_000 },
  );
  const res = JSON.parse(ta.stdout.trim().split('\n').pop() ?? '{}') as { notRoot?: string | null };
  t.match(res.notRoot ?? '', /not in the initial \(root\) network namespace/, 'test-all\'s suite guard reports a failure instead of "unchanged"');

  const here = await exec(null, [process.execPath, '-e', `require(${JSON.stringify(TEST_ALL)}).startSuiteGuard().then((g) => console.log(JSON.stringify({ notRoot: g && g.notRoot })))`], {
    timeoutMs: 60_000,
  });
  t.same(JSON.parse(here.stdout.trim().split('\n').pop() ?? '{}'), { notRoot: null }, 'from the root netns: the suite guard runs');
});
