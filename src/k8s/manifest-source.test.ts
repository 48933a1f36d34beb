import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { silentLogger } from '../common';
import { createManifestSource, type ManifestSource } from './manifest-source';
import type { ClusterEvent, ServiceObject } from './types';

function service(name: string, port: number, ip = '10.96.0.20'): string {
  return `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: shop
spec:
  clusterIP: ${ip}
  selector: {app: ${name}}
  ports:
  - name: http
    port: ${port}
    targetPort: 8080
`;
}

const slice = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true}
  nodeName: n1
ports:
- name: http
  port: 8080
`;

function describe(e: ClusterEvent): string {
  const obj = e.type === 'delete' ? e.previous : e.current;
  return `${e.type} ${e.kind} ${obj.meta.key}`;
}

interface Harness {
  dir: string;
  src: ManifestSource;
  events: string[];
  ac: AbortController;
  write(name: string, text: string): void;
}

async function harness(t: Test, files: Record<string, string>, opts: { rescanIntervalMs?: number } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'pws-manifests-'));
  const write = (name: string, text: string): void => writeFileSync(join(dir, name), text);
  for (const [n, text] of Object.entries(files)) write(n, text);
  const src = createManifestSource({ dir, logger: silentLogger, rescanIntervalMs: opts.rescanIntervalMs ?? 0, debounceMs: 20 });
  const events: string[] = [];
  src.onEvent((e) => events.push(describe(e)));
  const ac = new AbortController();
  t.teardown(() => {
    ac.abort();
    rmSync(dir, { recursive: true, force: true });
  });
  await src.start(ac.signal);
  return { dir, src, events, ac, write };
}


t.test('add: several documents per file, List kinds, JSON files', async (t) => {
  const list = JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } },
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, spec: { podCIDR: '10.244.1.0/24' }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.2' }] } },
    ],
  });
  const h = await harness(t, {
    'web.yaml': `${service('web', 80)}---\n${slice}---\n`,
    'cluster.json': list,
    'deploy.yaml': 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ignored}\n',
    '.hidden.yaml': service('hidden', 80),
    'notes.txt': 'not a manifest',
  });
  t.ok(h.src.hasSynced());
  await h.src.waitForSync();
  t.same(h.events.sort(), ['add EndpointSlice shop/web-1', 'add Namespace shop', 'add Node n1', 'add Service shop/web'].sort());
  t.equal(h.src.get('Service', 'shop/web')?.ports[0]?.port, 80);
  t.equal(h.src.get('EndpointSlice', 'shop/web-1')?.serviceName, 'web');
  t.same(h.src.get('Node', 'n1')?.podCIDRs, ['10.244.1.0/24']);
  t.same(h.src.problems(), [], 'unsupported kinds are ignored, not problems');
  t.notOk(
    Object.keys(require.cache).some((k) => k.includes('@kubernetes/client-node')),
    'the manifest source never loads @kubernetes/client-node',
  );
});

t.test('change: update events for changed documents only; identical content gives none', async (t) => {
  const h = await harness(t, { 'web.yaml': `${service('web', 80)}---\n${slice}`, 'api.yaml': service('api', 81, '10.96.0.21') });
  h.events.length = 0;
  h.write('web.yaml', `${service('web', 8080)}---\n${slice}`);
  await h.src.rescan();
  t.same(h.events, ['update Service shop/web'], 'only the changed object');
  h.events.length = 0;
  h.write('web.yaml', `# same objects, different text\n${service('web', 8080)}---\n${slice}`);
  h.write('api.yaml', service('api', 81, '10.96.0.21'));
  await h.src.rescan();
  t.same(h.events, [], 'identical objects: no events');
  t.equal(h.src.get('Service', 'shop/web')?.ports[0]?.port, 8080);
  // Moving an object to another file is not a delete + add.
  h.write('web.yaml', slice);
  h.write('moved.yaml', service('web', 8080));
  await h.src.rescan();
  t.same(h.events, [], 'object moved between files: no events');
});

t.test('delete: removing a file deletes its objects', async (t) => {
  const h = await harness(t, { 'web.yaml': `${service('web', 80)}---\n${slice}`, 'api.yaml': service('api', 81, '10.96.0.21') });
  h.events.length = 0;
  unlinkSync(join(h.dir, 'web.yaml'));
  await h.src.rescan();
  t.same(h.events.sort(), ['delete EndpointSlice shop/web-1', 'delete Service shop/web']);
  t.equal(h.src.get('Service', 'shop/web'), undefined);
  t.ok(h.src.get('Service', 'shop/api'), 'other files untouched');
  h.events.length = 0;
  h.write('api.yaml', '');
  await h.src.rescan();
  t.same(h.events, ['delete Service shop/api'], 'emptying a file deletes its objects too');
});

t.test('bad document: reported with file, index, field; others apply; last good kept', async (t) => {
  const h = await harness(t, { 'svc.yaml': `${service('web', 80)}---\n${service('api', 81, '10.96.0.21')}`, 'other.yaml': slice });
  h.events.length = 0;
  h.write('svc.yaml', `${service('web', 70000)}---\n${service('api', 82, '10.96.0.21')}---\n${service('new', 83, '10.96.0.22')}`);
  await h.src.rescan();
  t.same(h.events.sort(), ['add Service shop/new', 'update Service shop/api'], 'good documents of the same file apply');
  const web = h.src.get('Service', 'shop/web') as ServiceObject;
  t.equal(web.ports[0]!.port, 80, 'last good version of the bad object is kept');
  const problems = h.src.problems();
  t.equal(problems.length, 1);
  t.match(problems[0], { file: 'svc.yaml', documentIndex: 0, kind: 'Service', key: 'shop/web', field: 'spec.ports[0].port', value: 70000 });
  t.match(problems[0]!.reason, /Service shop\/web spec\.ports\[0\]\.port=70000/);

  // Fixing the document clears the problem and delivers the update.
  h.events.length = 0;
  h.write('svc.yaml', `${service('web', 90)}---\n${service('api', 82, '10.96.0.21')}---\n${service('new', 83, '10.96.0.22')}`);
  await h.src.rescan();
  t.same(h.events, ['update Service shop/web']);
  t.same(h.src.problems(), []);
});

t.test('bad document in a List names the item path', async (t) => {
  const list = { apiVersion: 'v1', kind: 'ServiceList', items: [{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'a', namespace: 'x' }, spec: { clusterIP: '10.96.0.999' } }] };
  const h = await harness(t, { 'a.yaml': service('web', 80), 'list.json': JSON.stringify(list) });
  t.match(h.src.problems(), [{ file: 'list.json', documentIndex: 0, field: 'items[0].spec.clusterIP', value: '10.96.0.999' }]);
  t.ok(h.src.get('Service', 'shop/web'), 'the other file applies');
  t.equal(h.src.get('Service', 'x/a'), undefined, 'an object that was never good is not there');
});

t.test('YAML syntax error: file keeps its last good objects, other files apply', async (t) => {
  const h = await harness(t, { 'svc.yaml': `${service('web', 80)}---\n${service('api', 81, '10.96.0.21')}`, 'other.yaml': slice });
  h.events.length = 0;
  h.write('svc.yaml', `${service('web', 80)}---\nkind: Service\nmetadata: {name: [unclosed\n`);
  h.write('other.yaml', slice.replace('10.244.1.5', '10.244.1.6'));
  await h.src.rescan();
  t.same(h.events, ['update EndpointSlice shop/web-1'], 'no delete for the object in the unreadable document');
  t.ok(h.src.get('Service', 'shop/api'), 'kept');
  const p = h.src.problems();
  t.equal(p.length, 1);
  t.match(p[0], { file: 'svc.yaml', documentIndex: 1 });
  t.match(p[0]!.reason, /YAML syntax error at line \d+/);
  h.write('svc.yaml', service('web', 80));
  await h.src.rescan();
  t.same(h.events.slice(1), ['delete Service shop/api'], 'once fixed, the file is authoritative again');
  t.same(h.src.problems(), []);
});

t.test('document without kind and duplicates across files are reported', async (t) => {
  const h = await harness(t, {
    'a.yaml': service('web', 80),
    'b.yaml': `${service('web', 99)}---\nmetadata: {name: x}\n`,
  });
  t.equal(h.src.get('Service', 'shop/web')?.ports[0]?.port, 80, 'first file in sorted order wins');
  const p = h.src.problems();
  t.match(p, [
    { file: 'b.yaml', documentIndex: 1, field: 'kind' },
    { file: 'b.yaml', key: 'shop/web', reason: /also defined in a.yaml/ },
  ]);
});

t.test('fs.watch picks up changes without an explicit rescan', async (t) => {
  const h = await harness(t, { 'a.yaml': service('web', 80) });
  const before = h.src.scanCount;
  h.write('b.yaml', service('api', 81, '10.96.0.21'));
  // Bounded wait on a condition (the watcher fires, the debounced scan runs).
  for (let i = 0; i < 200 && h.src.get('Service', 'shop/api') === undefined; i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  t.ok(h.src.get('Service', 'shop/api'), 'new file seen');
  t.ok(h.src.scanCount > before);
  t.same(h.events.slice(-1), ['add Service shop/api']);
});

t.test('missing folder: empty, reported, picked up once it appears', async (t) => {
  const parent = mkdtempSync(join(tmpdir(), 'pws-manifests-'));
  t.teardown(() => rmSync(parent, { recursive: true, force: true }));
  const dir = join(parent, 'later');
  const src = createManifestSource({ dir, logger: silentLogger, rescanIntervalMs: 0 });
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  await src.start(ac.signal);
  t.ok(src.hasSynced(), 'synced (empty)');
  t.match(src.problems(), [{ field: 'dir', reason: /does not exist/ }]);
  mkdirSync(dir);
  writeFileSync(join(dir, 'a.yaml'), service('web', 80));
  await src.rescan();
  t.ok(src.get('Service', 'shop/web'));
  t.same(src.problems(), []);
});

t.test('a long comment block before the first document is read at once (no regex backtracking)', async (t) => {
  // 40 comment lines, some with spaces only after the #, then content: the old preamble
  // regex backtracked exponentially on this and the source never synced.
  const comments = Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? '#' : `#   line ${i}: node1, node2 ──┐   (198.18.0.254)`)).join('\n');
  const h = await harness(t, {
    'lab.yaml': `${comments}\napiVersion: lab.podwire.io/v1alpha1\nkind: LabTopology\nmetadata:\n  name: shop\nspec:\n  nodes:\n    - { name: node1 }\n`,
    'web.yaml': `${comments}\n${service('web', 80)}`,
  });
  await h.src.waitForSync();
  t.equal(h.src.get('Service', 'shop/web')?.ports[0]?.port, 80, 'the document after the comments is read');
  t.same(h.src.problems(), []);
});
