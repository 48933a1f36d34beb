/**
 * The manifest source's change path: JSON parsed as JSON, only changed files re-read and
 * parsed, watch notifications delivered within tens of milliseconds, writes via rename,
 * directories moved in and out, a ConfigMap-style `..data` swap, truncate-then-write and
 * objects moved between files. Temp dirs only; bounded waits.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import t, { type Test } from 'tap';
import { silentLogger } from '../common';
import { nodeWriterOf } from './cluster-state';
import { createManifestSource, type ManifestSource, type ManifestSourceOptions } from './manifest-source';
import { RecordingNodeWriter } from './node-writer';
import type { ClusterEvent, ServiceObject } from './types';

function serviceDoc(name: string, port: number, ip: string, ns = 'shop'): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { clusterIP: ip, ports: [{ name: 'http', port, targetPort: 8080 }] } };
}
function sliceDoc(service: string, ip: string, ns = 'shop'): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${service}-1`, namespace: ns, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ip], conditions: { ready: true } }],
    ports: [{ name: 'http', port: 8080 }],
  };
}
const yamlService = (name: string, port: number, ip = '10.96.0.20'): string =>
  `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}, namespace: shop}\nspec:\n  clusterIP: ${ip}\n  ports: [{name: http, port: ${port}, targetPort: 8080}]\n`;

const describe = (e: ClusterEvent): string => `${e.type} ${e.kind} ${(e.type === 'delete' ? e.previous : e.current).meta.key}`;

interface H {
  dir: string;
  src: ManifestSource;
  events: string[];
  write(name: string, text: string): void;
}

async function harness(t: Test, files: Record<string, string>, opts: Partial<ManifestSourceOptions> = {}, before?: (dir: string) => void): Promise<H> {
  const dir = mkdtempSync(join(tmpdir(), 'pwk-manifests-'));
  const write = (name: string, text: string): void => writeFileSync(join(dir, name), text);
  for (const [n, text] of Object.entries(files)) {
    mkdirSync(join(dir, n, '..'), { recursive: true });
    write(n, text);
  }
  before?.(dir);
  const src = createManifestSource({ dir, logger: silentLogger, rescanIntervalMs: 0, ...opts });
  const events: string[] = [];
  src.onEvent((e) => events.push(describe(e)));
  const ac = new AbortController();
  t.teardown(() => {
    ac.abort();
    rmSync(dir, { recursive: true, force: true });
  });
  await src.start(ac.signal);
  return { dir, src, events, write };
}

async function until(t: Test, what: string, cond: () => boolean, maxMs = 5000): Promise<void> {
  const end = Date.now() + maxMs;
  while (!cond()) {
    if (Date.now() > end) {
      t.fail(`timed out waiting for: ${what}`);
      throw new Error(what);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('.json is parsed as JSON: a JSON syntax error names file, document 0, line and column; last good kept', async (t) => {
  const h = await harness(t, { 'svc.json': JSON.stringify(serviceDoc('web', 80, '10.96.0.20'), null, 2) });
  t.equal(h.src.get('Service', 'shop/web')?.ports[0]?.port, 80);
  h.events.length = 0;
  // Valid YAML, not JSON: proves the JSON parser reads .json files.
  h.write('svc.json', '{\n  "apiVersion": "v1",\n  kind: Service\n}\n');
  await h.src.rescan();
  t.same(h.events, [], 'nothing deleted');
  t.equal(h.src.get('Service', 'shop/web')?.ports[0]?.port, 80, 'last good version kept');
  const p = h.src.problems();
  t.equal(p.length, 1);
  t.match(p[0], { file: 'svc.json', documentIndex: 0 });
  t.match(p[0]!.reason, /^JSON syntax error at line 3, column 3: /);
  // A bad field in a JSON List still names the item path; the good items apply.
  const list = { apiVersion: 'v1', kind: 'List', items: [serviceDoc('web', 81, '10.96.0.20'), { ...serviceDoc('bad', 70000, '10.96.0.21') }] };
  h.write('svc.json', JSON.stringify(list));
  await h.src.rescan();
  t.same(h.events, ['update Service shop/web']);
  t.match(h.src.problems(), [{ file: 'svc.json', documentIndex: 0, field: 'items[1].spec.ports[0].port', value: 70000 }]);
});

t.test('YAML: an edit re-parses only the documents it changed; errors keep their file line numbers', async (t) => {
  const docs = (ports: number[]): string => ports.map((p, i) => yamlService(`s${i}`, p, `10.96.0.${i + 10}`)).join('---\n');
  const h = await harness(t, { 'many.yaml': `# header comment\n---\n${docs([80, 81, 82, 83])}` });
  t.equal(h.src.list('Service').length, 4);
  const before = h.src.scanStats().yamlDocumentsParsed;
  t.equal(before, 4, 'four documents parsed once each');
  h.events.length = 0;
  h.write('many.yaml', `# header comment\n---\n${docs([80, 81, 9000, 83])}`);
  await h.src.rescan();
  t.same(h.events, ['update Service shop/s2']);
  t.equal(h.src.scanStats().yamlDocumentsParsed - before, 1, 'only the changed document was parsed');
  // Reordering documents parses nothing and changes nothing.
  h.write('many.yaml', [yamlService('s3', 83, '10.96.0.13'), yamlService('s2', 9000, '10.96.0.12'), yamlService('s1', 81, '10.96.0.11'), yamlService('s0', 80, '10.96.0.10')].join('---\n'));
  await h.src.rescan();
  t.same(h.events, ['update Service shop/s2'], 'reordered: no events');
  // A syntax error in the third document (file line 15) is reported at its line in the file.
  const lines = [yamlService('s3', 83, '10.96.0.13'), yamlService('s2', 9000, '10.96.0.12')].join('---\n');
  h.write('many.yaml', `${lines}---\napiVersion: v1\nkind: Service\nmetadata: {name: [unclosed\n`);
  await h.src.rescan();
  const p = h.src.problems();
  t.match(p, [{ file: 'many.yaml', documentIndex: 2 }]);
  // `lines` ends with a newline: its split length is the line number of the `---`; the error is reported after the last line.
  const markerLine = lines.split('\n').length;
  const whole = (await import('yaml')).parseAllDocuments(`${lines}---\napiVersion: v1\nkind: Service\nmetadata: {name: [unclosed\n`)[2]!.errors[0]!.linePos![0].line;
  t.equal(whole, markerLine + 4, 'what the YAML parser says for the whole file');
  t.match(p[0]!.reason, new RegExp(`^YAML syntax error at line ${whole}, column 1: Flow sequence`), 'the same line as a whole-file parse');
  t.ok(h.src.get('Service', 'shop/s0'), 'the file keeps its last good objects');
});

t.test('only changed files are read and parsed; unchanged content is not parsed again', async (t) => {
  const files: Record<string, string> = {};
  for (let i = 0; i < 20; i++) files[`f${i}.json`] = JSON.stringify(serviceDoc(`s${i}`, 80, `10.96.0.${i + 10}`));
  const old = new Date(Date.now() - 60_000);
  const h = await harness(t, files, {}, (dir) => {
    for (const f of Object.keys(files)) utimesSync(join(dir, f), old, old);
  });
  t.equal(h.src.list('Service').length, 20);
  const s0 = h.src.scanStats();
  t.equal(s0.filesParsed, 20);
  await h.src.rescan();
  const s1 = h.src.scanStats();
  t.equal(s1.filesRead, s0.filesRead, 'full rescan: unchanged stat, nothing read');
  h.write('f3.json', JSON.stringify(serviceDoc('s3', 8080, '10.96.0.13')));
  await h.src.rescan();
  const s2 = h.src.scanStats();
  t.equal(s2.filesParsed - s1.filesParsed, 1, 'one changed file: one parse');
  t.same(h.events.slice(-1), ['update Service shop/s3']);
  // Same bytes written again (new mtime): read, hash equal, not parsed.
  h.write('f3.json', JSON.stringify(serviceDoc('s3', 8080, '10.96.0.13')));
  await h.src.rescan();
  t.equal(h.src.scanStats().filesParsed, s2.filesParsed, 'same content: not parsed');
});

t.test('a change to one file of a 10,000-Service folder reaches the handler within tens of ms (watch, no fixed debounce)', async (t) => {
  const files: Record<string, string> = {};
  const perFile = 20;
  for (let f = 0; f < 500; f++) {
    const items: unknown[] = [];
    for (let k = 0; k < perFile; k++) {
      const i = f * perFile + k;
      const ip = `10.96.${i >> 8}.${i & 255}`;
      items.push(serviceDoc(`s${i}`, 80, ip, `ns${f % 10}`), sliceDoc(`s${i}`, `10.244.${i >> 8}.${i & 255}`, `ns${f % 10}`));
    }
    files[`d${f % 10}/f${f}.json`] = JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
  }
  const h = await harness(t, files);
  t.equal(h.src.state().size('Service'), 10_000);
  t.equal(h.src.state().size('EndpointSlice'), 10_000);
  const latencies: number[] = [];
  for (let round = 0; round < 5; round++) {
    const f = 37 + round * 91;
    const i = f * perFile;
    let seenAt = 0;
    const off = h.src.onEvent((e) => {
      if (e.type === 'update' && e.kind === 'Service' && e.current.meta.name === `s${i}` && seenAt === 0) seenAt = performance.now();
    });
    const items: unknown[] = [];
    for (let k = 0; k < perFile; k++) {
      const j = f * perFile + k;
      items.push(serviceDoc(`s${j}`, k === 0 ? 9000 + round : 80, `10.96.${j >> 8}.${j & 255}`, `ns${f % 10}`), sliceDoc(`s${j}`, `10.244.${j >> 8}.${j & 255}`, `ns${f % 10}`));
    }
    const text = JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
    const t0 = performance.now();
    h.write(`d${f % 10}/f${f}.json`, text);
    await until(t, `round ${round} delivered`, () => seenAt > 0);
    latencies.push(seenAt - t0);
    off();
    await sleep(20);
  }
  latencies.sort((a, b) => a - b);
  const median = latencies[2]!;
  t.comment(`write → handler: median ${median.toFixed(1)} ms, all ${latencies.map((l) => l.toFixed(1)).join(', ')}`);
  // Generous bound for a shared test machine; bench/sources measures against ≤ 50 ms.
  t.ok(median < 250, `median ${median.toFixed(1)} ms`);
  t.ok(h.src.scanStats().partialScans >= 5, 'watch-driven partial scans, not full rescans');
  t.equal(h.src.scanStats().fullScans, 1, 'only the initial full scan');
});

t.test('editors that write via rename: temp file renamed over the manifest', async (t) => {
  const h = await harness(t, { 'web.yaml': yamlService('web', 80) });
  h.events.length = 0;
  // vim/kubectl style: a dot temp file, renamed into place.
  writeFileSync(join(h.dir, '.web.yaml.tmp'), yamlService('web', 81));
  renameSync(join(h.dir, '.web.yaml.tmp'), join(h.dir, 'web.yaml'));
  await until(t, 'rename seen', () => h.events.length > 0);
  t.same(h.events, ['update Service shop/web']);
  // A temp name with another extension, renamed to a new manifest name.
  writeFileSync(join(h.dir, 'api.yaml.part'), yamlService('api', 82, '10.96.0.21'));
  renameSync(join(h.dir, 'api.yaml.part'), join(h.dir, 'api.yaml'));
  await until(t, 'new file via rename', () => h.src.get('Service', 'shop/api') !== undefined);
  t.equal((h.src.get('Service', 'shop/api') as ServiceObject).ports[0]!.port, 82);
});

t.test('directories moved in and removed; a ConfigMap-style ..data swap', async (t) => {
  const h = await harness(t, { 'a.yaml': yamlService('a', 80) });
  const staging = join(h.dir, '.staging');
  mkdirSync(staging);
  writeFileSync(join(staging, 'b.yaml'), yamlService('b', 80, '10.96.0.21'));
  renameSync(staging, join(h.dir, 'sub'));
  await until(t, 'directory moved in', () => h.src.get('Service', 'shop/b') !== undefined);
  rmSync(join(h.dir, 'sub'), { recursive: true });
  await until(t, 'directory removed', () => h.src.get('Service', 'shop/b') === undefined);
  t.same(h.events.slice(-1), ['delete Service shop/b']);

  // kubelet's AtomicWriter: ..<ts>/file, ..data → ..<ts>, file → ..data/file; an update swaps ..data.
  const cm = join(h.dir, 'cm');
  mkdirSync(join(cm, '..v1'), { recursive: true });
  writeFileSync(join(cm, '..v1', 'c.yaml'), yamlService('c', 80, '10.96.0.22'));
  symlinkSync('..v1', join(cm, '..data'));
  symlinkSync('..data/c.yaml', join(cm, 'c.yaml'));
  await until(t, 'mounted file seen', () => h.src.get('Service', 'shop/c') !== undefined);
  mkdirSync(join(cm, '..v2'));
  writeFileSync(join(cm, '..v2', 'c.yaml'), yamlService('c', 90, '10.96.0.22'));
  symlinkSync('..v2', join(cm, '..data_tmp'));
  renameSync(join(cm, '..data_tmp'), join(cm, '..data'));
  await until(t, '..data swap seen', () => (h.src.get('Service', 'shop/c') as ServiceObject | undefined)?.ports[0]?.port === 90);
});

t.test('truncate-then-write gives no delete; a file that stays empty is deleted', async (t) => {
  // Generous recheck time: the test must not depend on the load of a shared machine.
  const h = await harness(t, { 'web.yaml': yamlService('web', 80) }, { emptyRecheckMs: 400 });
  h.events.length = 0;
  h.write('web.yaml', '');
  await sleep(20);
  h.write('web.yaml', yamlService('web', 81));
  await until(t, 'update seen', () => h.events.length > 0);
  await sleep(500);
  t.same(h.events, ['update Service shop/web'], 'no delete + add for the moment the file was empty');
  h.write('web.yaml', '');
  await until(t, 'delete after the recheck', () => h.events.length > 1);
  t.same(h.events.slice(1), ['delete Service shop/web']);
});

t.test('an object moved between files by two writes is not delete + add; a broken file keeps its objects', async (t) => {
  const h = await harness(t, { 'a.yaml': `${yamlService('web', 80)}---\n${yamlService('api', 81, '10.96.0.21')}`, 'b.yaml': yamlService('other', 82, '10.96.0.22') }, { deleteGraceMs: 400 });
  h.events.length = 0;
  h.write('a.yaml', yamlService('api', 81, '10.96.0.21'));
  await sleep(15);
  h.write('b.yaml', `${yamlService('other', 82, '10.96.0.22')}---\n${yamlService('web', 80)}`);
  await sleep(600);
  t.same(h.events, [], 'moved: no events');
  t.ok(h.src.get('Service', 'shop/web'));
  h.write('a.yaml', 'apiVersion: v1\nkind: Service\nmetadata: {name: [unclosed\n');
  await sleep(150);
  t.same(h.events, [], 'syntax error: objects kept');
  t.ok(h.src.get('Service', 'shop/api'));
  t.match(h.src.problems(), [{ file: 'a.yaml', documentIndex: 0, reason: /YAML syntax error/ }]);
  h.write('a.yaml', '');
  await until(t, 'emptied file deletes', () => h.src.get('Service', 'shop/api') === undefined);
  t.same(h.src.problems(), []);
});

t.test('manifest mode writes nothing back: its node writer records only', async (t) => {
  const h = await harness(t, { 'a.yaml': yamlService('a', 80) });
  const w = nodeWriterOf(h.src);
  t.ok(w instanceof RecordingNodeWriter);
  t.equal(w.writesBack, false);
  await w.patchAnnotations({ 'podwire.io/backend': 'vxlan' });
  await w.setCondition({ type: 'PodwireOverlayReady', status: 'True', reason: 'Ready', message: 'ok' });
  t.equal((w as RecordingNodeWriter).annotations.get('podwire.io/backend'), 'vxlan');
  t.equal((w as RecordingNodeWriter).conditions.get('PodwireOverlayReady')?.status, 'True');
  t.same(h.events.length, 1, 'no event from a write: nothing was written to the folder');
});
