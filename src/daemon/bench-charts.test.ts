/**
 * scripts/bench-charts.js: re-running it after a bench run updates docs/benchmarks.md between
 * its markers and writes the SVG chart; a missing bench JSON becomes a note, not a failure.
 * Runs on a copy of the page in a temp dir (the committed page is not touched).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';

const ROOT = path.resolve(__dirname, '../../..');
const SCRIPT = path.join(ROOT, 'scripts/bench-charts.js');

t.test('bench JSON → SVG chart + table between the markers; missing JSON → a note', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'doc-charts-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const results = path.join(dir, 'results');
  mkdirSync(results);
  const page = path.join(dir, 'benchmarks.md');
  // The committed page with every section emptied: what it shows today must not decide the test.
  writeFileSync(page, readFileSync(path.join(ROOT, 'docs/benchmarks.md'), 'utf8').replace(/(<!-- bench:(\w+) -->)[\s\S]*?(<!-- \/bench:\2 -->)/g, '$1\n$3'));
  const overlay = (podwireS: number) => ({
    bench: 'overlay',
    at: '2026-12-02T00:00:00.000Z',
    targets: { ratio: 1.5, tenThousandS: 0.2 },
    rows: [{ nodes: 10000, entries: 30000, podwireS, ipBatchS: 0.6, ratio: Math.round((0.6 / podwireS) * 100) / 100 }],
  });
  writeFileSync(path.join(results, 'overlay.json'), JSON.stringify(overlay(0.15)));
  writeFileSync(path.join(results, 'dns-2026-12-02T00-00-00-000Z.json'), JSON.stringify({ when: 'w', summary: { podwire: { qps: 50000, qpsPerServerCpuSec: 60000 }, knot: { qps: 90000, qpsPerServerCpuSec: 100000 } } }));
  const run = () => execFileSync(process.execPath, [SCRIPT, '--results', results, '--page', page, '--img', path.join(dir, 'img')], { encoding: 'utf8' });

  const out = run();
  t.match(out, /overlay: chart \+ table/);
  t.match(out, /proxy: No `bench\/results\/proxy\*\.json`/);
  let md = readFileSync(page, 'utf8');
  t.match(md, /<!-- bench:overlay -->\n!\[Overlay[^\n]*\]\(img\/bench-overlay\.svg\)\n\n\| nodes .*\n.*\n\| 10000 \| 30000 \| 0\.150 \| 0\.600 \| 4\.00× \| ≥ 1\.5×, ≤ 0\.2 s: met \|/);
  t.match(md, /\| podwire \| 50,000 \| 60,000 \|/, 'the dns table from the newest dns-<time>.json');
  t.match(md, /<!-- bench:proxy -->\n_No `bench\/results\/proxy\*\.json`[^\n]*\n<!-- \/bench:proxy -->/);
  const svg = readFileSync(path.join(dir, 'img/bench-overlay.svg'), 'utf8');
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.match(svg, /<title>podwire: 0\.150 seconds<\/title>/);

  // A new run: the page follows, nothing is duplicated.
  writeFileSync(path.join(results, 'overlay.json'), JSON.stringify(overlay(0.5)));
  run();
  md = readFileSync(page, 'utf8');
  t.match(md, /\| 10000 \| 30000 \| 0\.500 \| 0\.600 \| 1\.20× \| ≥ 1\.5×, ≤ 0\.2 s: \*\*missed\*\* \|/);
  t.equal(md.split('<!-- bench:overlay -->').length, 2, 'one overlay section');
  t.equal(md.split('bench-overlay.svg').length, 2, 'one chart link');
  t.match(readFileSync(path.join(dir, 'img/bench-overlay.svg'), 'utf8'), /podwire: 0\.500 seconds/);

  // A machine without the JSON keeps the rendered section instead of erasing it.
  rmSync(path.join(results, 'overlay.json'));
  t.match(run(), /overlay: no JSON in .*; kept the section from the last run/);
  t.equal(readFileSync(page, 'utf8'), md, 'page unchanged');
});
