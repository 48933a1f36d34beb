/**
 * bundle.ts: the bundle is used only while every recorded input is unchanged, and its code
 * cache is written once per command, used afterwards, and replaced when the bundle changes.
 */
import { mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { BUNDLE_INPUTS, freshBundle, loadBundle } from './bundle';

function makeBundle(dir: string, source: string): void {
  writeFileSync(join(dir, 'b.js'), source);
  writeFileSync(join(dir, 'in.js'), '// an input\n');
  const e = (f: string): [string, number, number] => [f, statSync(join(dir, f)).size, statSync(join(dir, f)).mtimeMs];
  writeFileSync(join(dir, BUNDLE_INPUTS), JSON.stringify({ bundle: e('b.js'), inputs: [e('in.js')] }));
}

t.test('fresh only while every input is unchanged; PODWIRE_CNI_BUNDLE=0 turns it off', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pwc2-bundle-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.equal(freshBundle(dir), undefined, 'no inputs file: no bundle');
  makeBundle(dir, 'exports.x = 1;\n');
  t.equal(freshBundle(dir)?.file, join(dir, 'b.js'));
  t.equal(freshBundle(dir, { PODWIRE_CNI_BUNDLE: '0' }), undefined, 'disabled');
  utimesSync(join(dir, 'in.js'), new Date(), new Date(Date.now() + 5000));
  t.equal(freshBundle(dir), undefined, 'an input rebuilt after the bundle (tsc without the bundle step): stale');
  makeBundle(dir, 'exports.x = 1;\n');
  writeFileSync(join(dir, 'in.js'), '// an edited input\n');
  t.equal(freshBundle(dir), undefined, 'an edited input: stale');
  makeBundle(dir, 'exports.x = 1;\n');
  rmSync(join(dir, 'in.js'));
  t.equal(freshBundle(dir), undefined, 'a missing input: stale');
  writeFileSync(join(dir, BUNDLE_INPUTS), '{"bundle":');
  t.equal(freshBundle(dir), undefined, 'a torn inputs file: no bundle');
});

t.test('the code cache: written after the first run of a command, used by the next, dropped for a new build', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pwc2-bundle-'));
  const cache = join(dir, 'cache');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  makeBundle(dir, 'exports.add = (a, b) => a + b; exports.dir = __dirname; exports.req = typeof require("node:path").join;\n');
  const first = loadBundle<{ add(a: number, b: number): number; dir: string; req: string }>(freshBundle(dir)!, cache, 'ADD');
  t.equal(first.exports.add(2, 3), 5, 'runs as a CommonJS module');
  t.equal(first.exports.dir, dir, '__dirname is the bundle\'s');
  t.equal(first.exports.req, 'function', 'require works for built-ins');
  t.equal(first.cached, false, 'no cache yet');
  first.saveCache();
  t.equal(readdirSync(cache).length, 1, 'one cache file');
  const second = loadBundle<{ add(a: number, b: number): number }>(freshBundle(dir)!, cache, 'ADD');
  t.equal(second.cached, true, 'the next start uses it');
  t.equal(second.exports.add(1, 1), 2);
  t.equal(loadBundle(freshBundle(dir)!, cache, 'DEL').cached, false, 'each command has its own');
  makeBundle(dir, 'exports.add = (a, b) => a - b; // a new build, another size\n');
  const rebuilt = loadBundle<{ add(a: number, b: number): number }>(freshBundle(dir)!, cache, 'ADD');
  t.equal(rebuilt.cached, false);
  t.equal(rebuilt.exports.add(2, 3), -1, 'the new code runs, not the old cache');
  rebuilt.saveCache();
  t.equal(readdirSync(cache).length, 1, 'the old build\'s cache is removed');
  t.equal(loadBundle(freshBundle(dir)!, join(dir, 'b.js', 'not-a-dir'), 'ADD').exports !== undefined, true, 'an unusable cache dir is no error');
});
