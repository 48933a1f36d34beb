/**
 * scripts/test-all.js counts like tap's own summary: leaves (assertions, skipped/empty subtests),
 * plus one failure for a subtest that ends `not ok` with no failing leaf (crash/timeout), and the
 * leaves of a subtest that never closes. Fed with TAP as tap 21 prints it (no root needed).
 */
import t from 'tap';
import { join } from 'node:path';

interface Stats {
  pass: number;
  fail: number;
  skip: number;
  todo: number;
  points: number;
}
interface ParserLike {
  end(s: string): void;
}
interface Runner {
  attach(
    parser: ParserLike,
    trail: string[],
    onLeaf: (r: { name: string }, kind: string, names: string[]) => void,
    onFile: ((r: { ok: boolean; name: string }, s: Stats | null, names: string[]) => void) | null,
  ): { stats: Stats };
}

const runner = require(join(__dirname, '..', '..', '..', 'scripts', 'test-all.js')) as Runner;
const { Parser } = require('tap-parser') as { Parser: new () => ParserLike };

function count(tapText: string): { stats: Stats; leaves: string[]; files: string[] } {
  const p = new Parser();
  const leaves: string[] = [];
  const files: string[] = [];
  const r = runner.attach(
    p,
    [],
    (_r, kind, names) => leaves.push(`${kind} ${names.join(' > ')}`),
    (res, _s, names) => files.push(`${res.ok ? 'ok' : 'FAIL'} ${names.join(' > ')}`),
  );
  p.end(tapText);
  return { stats: r.stats, leaves, files };
}

const SAMPLE = `TAP version 14
1..6
# Subtest: a.test.js
    # Subtest: sub1
        ok 1 - leaf a
        ok 2 - leaf b
        # Subtest: nested
            ok 1 - deep
            1..1
        ok 3 - nested # time=22ms

        1..3
    ok 1 - sub1 # time=58ms

    # Subtest: skipped via plan0
        1..0 # kernel lacks ipvs
    ok 2 - skipped via plan0 # SKIP kernel lacks ipvs

    ok 3 - skipped opt # SKIP no wireguard
    ok 4 - top leaf
    ok 5 - a skipped assertion # SKIP
    1..5
ok 1 - a.test.js # time=93ms

# Subtest: b.test.js
    1..0 # kernel lacks ipvs
ok 2 - b.test.js # SKIP kernel lacks ipvs

# Subtest: c.test.js
    # Subtest: x
        not ok 1 - fails
        1..1
    not ok 1 - x # time=64ms
    1..1
not ok 3 - c.test.js # time=89ms

# Subtest: d.test.js
    # Subtest: times out
        ok 1 - before hang
        not ok 2 - timeout!
    not ok 1 - times out
    1..1
not ok 4 - d.test.js

# Subtest: e.test.js
    ok 1 - one
    1..1
not ok 5 - e.test.js
  ---
  exitCode: 7
  ...

# Subtest: f.test.js
    # Subtest: killed midway
        ok 1 - counted although never closed
not ok 6 - f.test.js
  ---
  signal: SIGKILL
  ...
# Subtest: g.test.js
    ok 1 - g passes
not ok 7 - timeout!
  ---
  expired: h.test.js
  ...
`;

t.test('leaf counting matches tap', async (t) => {
  const { stats, leaves, files } = count(SAMPLE);
  t.same(
    { pass: stats.pass, fail: stats.fail, skip: stats.skip },
    // pass: leaf a, leaf b, deep, top leaf, before hang, one, counted although never closed, g passes
    // fail: fails, timeout! (d), e.test.js (exit 7), timeout! (top)   [f has no failing leaf -> +1]
    // skip: plan0 subtest, skip opt, skipped assertion, b.test.js
    { pass: 8, fail: 5, skip: 4 },
  );
  t.ok(leaves.includes('fail e.test.js'), 'a crashed file with only passing leaves is one failure');
  t.ok(leaves.includes('fail f.test.js'), 'a SIGKILLed file is one failure');
  t.ok(leaves.includes('pass f.test.js > killed midway > counted although never closed'), 'leaves of an unclosed subtest count');
  t.ok(leaves.includes('skip a.test.js > skipped via plan0'), 'plan(0) subtest is a skip');
  t.ok(leaves.includes('skip b.test.js'), 'a file that planned 0 is a skip');
  t.ok(leaves.includes('fail timeout!'), "tap's top-level timeout point is a failure");
  t.same(files, [
    'ok a.test.js',
    'ok b.test.js',
    'FAIL c.test.js',
    'FAIL d.test.js',
    'FAIL e.test.js',
    'FAIL f.test.js',
    'ok g.test.js',
    'FAIL timeout!',
  ]);
});

t.test('an all-passing stream has no failures', async (t) => {
  const { stats } = count('TAP version 14\n1..1\n# Subtest: x\n    ok 1 - a\n    ok 2 - b\n    1..2\nok 1 - x\n');
  t.same({ pass: stats.pass, fail: stats.fail, skip: stats.skip }, { pass: 2, fail: 0, skip: 0 });
});
