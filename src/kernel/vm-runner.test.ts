/** The kernel-VM runner's pure parts (scripts/vm/run-tests.js): routing by KERNEL_REQUIRES, TAP completion. */
import t from 'tap';
import * as path from 'node:path';
import { Parser } from 'tap-parser';

// dist/src/kernel -> repository root
// eslint-disable-next-line @typescript-eslint/no-require-imports
const vm = require(path.resolve(__dirname, '..', '..', '..', 'scripts', 'vm', 'run-tests.js')) as {
  kernelRequires(f: string): string[] | null;
  routeTests(f: string[]): { host: string[]; vm: string[]; modules: string[] };
  completeTap(tap: string, files: string[], reason: string): string;
};

t.test('routing: files declaring KERNEL_REQUIRES go to the VM, with the union of modules', async (t) => {
  t.same(vm.kernelRequires('dist/test-netns/vm/ipvs.test.js'), ['ip_vs', 'ip_vs_rr', 'ip_vs_wrr']);
  t.equal(vm.kernelRequires('dist/test-netns/kernel/routes.test.js'), null);
  const r = vm.routeTests(['dist/test-netns/kernel/routes.test.js', 'dist/test-netns/vm/ipvs.test.js']);
  t.same(r, { host: ['dist/test-netns/kernel/routes.test.js'], vm: ['dist/test-netns/vm/ipvs.test.js'], modules: ['ip_vs', 'ip_vs_rr', 'ip_vs_wrr'] });
});

function summary(tap: string): Promise<{ ok: boolean; pass: number; fail: number }> {
  return new Promise((resolve) => {
    const p = new Parser((r) => resolve({ ok: r.ok, pass: r.pass, fail: r.fail }));
    p.end(tap);
  });
}

t.test('a guest that died mid-run: complete files kept, the rest fail with the reason', async (t) => {
  const partial = [
    'TAP version 14',
    '# Subtest: a.test.js',
    '    ok 1 - fine',
    '    1..1',
    'ok 1 - a.test.js',
    '# Subtest: b.test.js',
    '    ok 1 - half',
  ].join('\n');
  const out = vm.completeTap(partial, ['a.test.js', 'b.test.js', 'c.test.js'], 'timed out after 300s');
  t.match(out, /^ok 1 - a\.test\.js$/m);
  t.match(out, /^not ok 2 - b\.test\.js$/m);
  t.match(out, /^not ok 3 - c\.test\.js$/m);
  t.match(out, /kernel VM: timed out after 300s/);
  t.match(out, /^1\.\.3$/m);
  t.notMatch(out, /half/, 'the unfinished file\'s partial output is dropped');
  const s = await summary(out);
  t.equal(s.ok, false);
  t.equal(s.fail, 2);
  const none = vm.completeTap('', ['x.test.js'], 'the guest gave no exit status');
  t.match(none, /^TAP version 14\nnot ok 1 - x\.test\.js/);
  t.equal((await summary(none)).fail, 1);
});
