/**
 * The Kubernetes source against the fixture API server (real HTTP on 127.0.0.1, real
 * KubeConfig auth from @kubernetes/client-node). No root needed.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { silentLogger } from '../../src/common';
import { createKubernetesSource, type KubernetesSource } from '../../src/k8s';
import type { ClusterKind, ServiceObject } from '../../src/k8s/types';
import * as o from '../fixtures/apiserver/objects';
import { startSource, waitFor } from './helpers';
import { FakeApiServer } from '../fixtures/apiserver/server';

interface Harness {
  api: FakeApiServer;
  src: KubernetesSource;
  events: string[];
  ac: AbortController;
  kubeconfig: string;
}

async function setup(
  t: Test,
  opts: {
    kinds?: ClusterKind[];
    pageSize?: number;
    goneMode?: 'http' | 'event';
    seed?: (api: FakeApiServer) => void;
    token?: string;
    nodeScope?: 'cluster' | 'own';
  } = {},
): Promise<Harness> {
  const api = new FakeApiServer({ goneMode: opts.goneMode });
  await api.start();
  const dir = mkdtempSync(join(tmpdir(), 'pws-k8s-'));
  const kubeconfig = join(dir, 'kubeconfig');
  api.writeKubeconfig(kubeconfig);
  opts.seed?.(api);
  const { src, events, ac } = await startSource(t, api, dir, {
    kubeconfigPath: kubeconfig,
    nodeName: 'node-a',
    ...(opts.nodeScope ? { nodeScope: opts.nodeScope } : {}),
    logger: silentLogger,
    kinds: opts.kinds ?? ['Service'],
    tuning: { pageSize: opts.pageSize ?? 500, backoffInitialMs: 20, backoffMaxMs: 200 },
  });
  return { api, src, events, ac, kubeconfig };
}

/** Whether @kubernetes/client-node was imported into this process. */
const clientNodeLoaded = (): boolean => Object.keys(require.cache).some((k) => k.includes('@kubernetes/client-node'));

const svcStats = (h: Harness) => h.src.stats().find((s) => s.kind === 'Service')!;
const seedServices = (n: number) => (api: FakeApiServer) => {
  for (let i = 0; i < n; i++) api.put('services', o.service('default', `s${i}`, o.serviceIP(i)));
};

t.test('initial sync of every kind; own Node; Pods of this node; ConfigMaps of kube-system', async (t) => {
  const h = await setup(t, {
    kinds: ['Node', 'Service', 'EndpointSlice', 'Pod', 'Namespace', 'ConfigMap'],
    seed: (api) => {
      api.put('nodes', o.node('node-a', '198.18.0.2', '10.244.0.0/24'));
      api.put('nodes', o.node('node-b', '198.18.0.3', '10.244.1.0/24'));
      api.put('namespaces', o.namespace('default'));
      api.put('services', o.service('default', 'web', '10.96.0.10'));
      api.put('endpointslices', o.endpointSlice('default', 'web', 'web-x', ['10.244.0.5', '10.244.1.5'], ['node-a', 'node-b']));
      api.put('pods', o.pod('default', 'mine', 'node-a', '10.244.0.5'));
      api.put('pods', o.pod('default', 'theirs', 'node-b', '10.244.1.5'));
      api.put('configmaps', o.configMap('kube-system', 'podwire', { mode: 'iptables' }));
      api.put('configmaps', o.configMap('default', 'app', { x: 'y' }));
    },
  });
  await h.src.waitForSync();
  t.ok(h.src.hasSynced());
  t.same(h.src.get('Node', 'node-a')?.podCIDRs, ['10.244.0.0/24'], 'own node via get');
  t.equal(h.src.list('Node').length, 2, 'all Nodes (overlay peers)');
  t.same(h.src.list('Pod').map((p) => p.meta.key), ['default/mine'], 'only this node’s Pods');
  t.same(h.src.list('ConfigMap').map((c) => c.meta.key), ['kube-system/podwire']);
  t.equal(h.src.get('EndpointSlice', 'default/web-x')?.endpoints.length, 2);
  t.equal(h.src.get('Service', 'default/web')?.meta.annotations['kubectl.kubernetes.io/last-applied-configuration'], undefined);
  t.equal(h.events.length, 7, 'one add per object seen');
  await waitFor(t, 'six watches open', () => h.api.watcherCount === 6);
  const watches = h.api.requests.filter((r) => r.query.watch === 'true');
  t.ok(watches.length >= 6, 'a watch per kind');
  t.ok(watches.every((r) => r.query.allowWatchBookmarks === 'true'), 'bookmarks requested');
  t.ok(watches.every((r) => Number(r.query.timeoutSeconds) > 0), 'server-side watch timeout set');
  t.notOk(clientNodeLoaded(), 'the library ran in the helper process, not here');
});

t.test("nodeScope 'own': only this node's Node is listed and watched (fieldSelector metadata.name)", async (t) => {
  const h = await setup(t, {
    kinds: ['Node'],
    nodeScope: 'own',
    seed: (api) => {
      api.put('nodes', o.node('node-a', '198.18.0.2', '10.244.0.0/24'));
      api.put('nodes', o.node('node-b', '198.18.0.3', '10.244.1.0/24'));
    },
  });
  await h.src.waitForSync(AbortSignal.timeout(15_000));
  t.same(h.src.list('Node').map((n) => n.meta.name), ['node-a'], 'only the own Node is cached');
  await waitFor(t, 'the Node watch open', () => h.api.watcherCount === 1);
  h.events.length = 0;
  h.api.put('nodes', o.node('node-c', '198.18.0.4', '10.244.2.0/24'));
  h.api.put('nodes', o.node('node-a', '198.18.0.2', '10.244.9.0/24'));
  await waitFor(t, 'the own Node update', () => h.events.length >= 1);
  t.same(h.events, ['update Node node-a'], 'a new peer Node is not delivered; the own Node update is');
  t.same(h.src.get('Node', 'node-a')?.podCIDRs, ['10.244.9.0/24']);
});

t.test('watch dropped mid-stream: no events lost, none duplicated, no relist', async (t) => {
  const h = await setup(t, { seed: seedServices(3) });
  await h.src.waitForSync();
  h.events.length = 0;
  h.api.put('services', o.service('default', 's3', o.serviceIP(3)));
  await waitFor(t, 'live add', () => h.events.length === 1);
  const rvBefore = svcStats(h).resourceVersion;
  t.equal(rvBefore, h.api.resourceVersion, 'resourceVersion follows events');

  // Cut the stream in the middle of a line, then change things while it is down.
  t.equal(h.api.dropWatches({ midLine: true }), 1);
  h.api.put('services', o.service('default', 's4', o.serviceIP(4)));
  h.api.put('services', o.service('default', 's0', o.serviceIP(0), [{ port: 8080 }]));
  h.api.delete('services', 'default/s1');
  await waitFor(t, 'catch-up after reconnect', () => h.events.length === 4);
  t.same(h.events, ['add Service default/s3', 'add Service default/s4', 'update Service default/s0', 'delete Service default/s1']);
  const rewatch = h.api.requests.filter((r) => r.query.watch === 'true').at(-1)!;
  t.equal(rewatch.query.resourceVersion, rvBefore, 're-watched from the last resourceVersion seen');
  t.equal(svcStats(h).lists, 1, 'no relist needed');

  // Many clean drops in a row, each with one change: exactly one event per change.
  for (let i = 0; i < 20; i++) {
    await waitFor(t, 'watch open', () => h.api.watcherCount === 1);
    h.api.dropWatches({ midLine: i % 2 === 0 });
    h.api.put('services', o.service('default', `loop${i}`, o.serviceIP(100 + i)));
  }
  await waitFor(t, '20 more events', () => h.events.length === 24);
  await waitFor(t, 'watch open again', () => h.api.watcherCount === 1);
  const adds = h.events.slice(4);
  t.equal(new Set(adds).size, 20, 'no duplicates');
  t.equal(h.src.list('Service').length, 3 + 2 - 1 + 20);
});

for (const goneMode of ['http', 'event'] as const) {
  t.test(`410 Gone on re-watch (${goneMode}) → relist; an object deleted meanwhile is delivered as delete`, async (t) => {
    const h = await setup(t, { goneMode, seed: seedServices(3) });
    await h.src.waitForSync();
    h.events.length = 0;
    // Atomically (same tick): cut the watch, delete s1, change s2, compact history.
    h.api.dropWatches();
    h.api.delete('services', 'default/s1');
    h.api.put('services', o.service('default', 's2', o.serviceIP(2), [{ port: 9090 }]));
    h.api.compact();
    await waitFor(t, 'relist delivered the changes', () => h.events.length === 2);
    t.same(h.events.sort(), ['delete Service default/s1', 'update Service default/s2']);
    const st = svcStats(h);
    t.equal(st.expired, 1, 'one 410');
    t.equal(st.lists, 2, 'relisted once');
    t.equal(h.src.get('Service', 'default/s1'), undefined);
  });
}

t.test('410 as an ERROR event on an open stream → relist with deletes', async (t) => {
  const h = await setup(t, { seed: seedServices(3) });
  await h.src.waitForSync();
  await waitFor(t, 'watch open', () => h.api.watcherCount === 1);
  h.events.length = 0;
  h.api.holdLive = true; // the client does not see these writes on its stream
  h.api.delete('services', 'default/s0');
  h.api.put('services', o.service('default', 'fresh', o.serviceIP(50)));
  h.api.compact();
  h.api.holdLive = false;
  t.equal(h.api.sendGoneEvents(), 1);
  await waitFor(t, 'relist', () => h.events.length === 2);
  t.same(h.events.sort(), ['add Service default/fresh', 'delete Service default/s0']);
  t.equal(svcStats(h).expired, 1);
});

t.test('bookmarks advance the resourceVersion', async (t) => {
  const h = await setup(t, { kinds: ['Service', 'Node'], seed: seedServices(1) });
  await h.src.waitForSync();
  await waitFor(t, 'watches open', () => h.api.watcherCount === 2);
  const before = svcStats(h).resourceVersion;
  for (let i = 0; i < 5; i++) h.api.put('nodes', o.node(`n${i}`, `198.18.0.${10 + i}`, `10.244.${10 + i}.0/24`));
  await waitFor(t, 'node events', () => h.src.list('Node').length === 5);
  t.equal(svcStats(h).resourceVersion, before, 'other kinds’ writes do not move the Service watch');
  t.equal(h.api.sendBookmarks(), 2);
  await waitFor(t, 'bookmark applied', () => svcStats(h).resourceVersion === h.api.resourceVersion);
  t.equal(svcStats(h).bookmarks, 1);
  const eventsBefore = h.events.length;
  // Compact right after the bookmark: a client without it would now get 410.
  h.api.compact();
  h.api.dropWatches();
  await waitFor(t, 're-watch', () => h.api.requests.filter((r) => r.path === '/api/v1/services' && r.query.watch === 'true').length === 2);
  await waitFor(t, 'watches open again', () => h.api.watcherCount === 2);
  const rewatch = h.api.requests.filter((r) => r.path === '/api/v1/services' && r.query.watch === 'true').at(-1)!;
  t.equal(rewatch.query.resourceVersion, h.api.resourceVersion, 're-watch starts at the bookmark');
  t.equal(rewatch.status, 200, 'not 410');
  t.equal(svcStats(h).expired, 0);
  t.equal(svcStats(h).lists, 1, 'no relist thanks to the bookmark');
  t.equal(h.events.length, eventsBefore, 'bookmarks deliver no events');
});

t.test('10,000 Services listed in pages of 500', async (t) => {
  const h = await setup(t, {
    seed: (api) =>
      api.bulkLoad(
        'services',
        (function* () {
          for (let i = 0; i < 10_000; i++) yield o.service(`ns-${i % 20}`, `svc-${i}`, o.serviceIP(i));
        })(),
      ),
  });
  await h.src.waitForSync();
  t.equal(h.src.list('Service').length, 10_000);
  t.equal(h.events.length, 10_000);
  t.equal(new Set(h.events).size, 10_000, 'each Service added once');
  const lists = h.api.requests.filter((r) => r.path === '/api/v1/services' && r.query.watch === undefined);
  t.equal(lists.length, 20, '20 pages');
  t.ok(lists.every((r) => r.query.limit === '500'));
  t.equal(lists.filter((r) => r.query.continue !== undefined).length, 19, 'pages 2..20 use continue');
  t.equal(svcStats(h).pages, 20);
});

t.test('continue token expired mid-list → full relist, no duplicate events', async (t) => {
  let compacted = false;
  const h = await setup(t, {
    pageSize: 100,
    seed: (api) => {
      seedServices(450)(api);
      api.onRequest = (r) => {
        if (!compacted && r.query.continue !== undefined && r.query.continue !== '') {
          compacted = true;
          api.compact();
        }
      };
    },
  });
  await h.src.waitForSync();
  t.ok(compacted);
  t.equal(h.src.list('Service').length, 450);
  t.equal(h.events.length, 450, 'the relist re-reads the first page without new events');
  t.equal(svcStats(h).expired, 1);
  t.equal(svcStats(h).lists, 2);
});

t.test('API server stopped: state kept, no events; restarted: catches up', async (t) => {
  const h = await setup(t, { kinds: ['Service', 'Node'], seed: seedServices(5) });
  await h.src.waitForSync();
  await waitFor(t, 'watches open', () => h.api.watcherCount === 2);
  h.events.length = 0;
  await h.api.stop();
  const errorsAt = svcStats(h).errors;
  await waitFor(t, 'several failed retries', () => svcStats(h).errors >= errorsAt + 3);
  t.same(h.events, [], 'no events while the API server is away');
  t.equal(h.src.list('Service').length, 5, 'last state kept (no flush)');
  t.ok(h.src.hasSynced(), 'still synced');
  t.match(svcStats(h).lastError, /ECONNREFUSED|ECONNRESET|socket hang up/);

  // Changes made while we were away arrive after the restart, from history.
  h.api.put('services', o.service('default', 'while-away', o.serviceIP(77)));
  h.api.delete('services', 'default/s4');
  await h.api.start();
  await waitFor(t, 'caught up', () => h.events.length === 2);
  t.same(h.events, ['add Service default/while-away', 'delete Service default/s4']);
  t.equal(svcStats(h).lists, 1, 'resumed the watch, no relist');

  // A restart that lost history (restored etcd, compaction) → 410 → relist with deletes.
  h.events.length = 0;
  await h.api.stop();
  h.api.delete('services', 'default/s3');
  h.api.compact();
  await h.api.start();
  await waitFor(t, 'relist after restart', () => h.events.length === 1);
  t.same(h.events, ['delete Service default/s3']);
  t.equal(svcStats(h).expired, 1);
});

t.test('invalid object from the API: reported, skipped, last good kept', async (t) => {
  const h = await setup(t, { seed: seedServices(1) });
  await h.src.waitForSync();
  await waitFor(t, 'watch open', () => h.api.watcherCount === 1);
  h.events.length = 0;
  const bad = o.service('default', 's0', '10.96.0.999');
  h.api.put('services', bad);
  const good = o.service('default', 'next', o.serviceIP(9));
  h.api.put('services', good);
  await waitFor(t, 'later event', () => h.events.length === 1);
  t.same(h.events, ['add Service default/next'], 'no event for the invalid version');
  t.equal((h.src.get('Service', 'default/s0') as ServiceObject).clusterIPs[0], o.serviceIP(0), 'last good kept');
  t.match(h.src.problems(), [{ kind: 'Service', key: 'default/s0', field: 'spec.clusterIP', value: '10.96.0.999' }]);
  // A relist must not delete it either, and deletion of the object clears the problem.
  h.api.holdLive = true;
  h.api.put('services', o.service('default', 'unseen', o.serviceIP(10)));
  h.api.compact();
  h.api.holdLive = false;
  h.api.dropWatches();
  await waitFor(t, 'relisted', () => svcStats(h).lists === 2 && h.events.length === 2);
  t.equal(h.events[1], 'add Service default/unseen');
  t.ok(h.src.get('Service', 'default/s0'), 'kept across a relist');
  t.equal(h.src.problems().length, 1, 'still reported');
  h.api.delete('services', 'default/s0');
  await waitFor(t, 'delete', () => h.events.length === 3);
  t.equal(h.events[2], 'delete Service default/s0');
  t.same(h.src.problems(), []);
});

t.test('wrong credentials: not synced, error recorded, retries with backoff', async (t) => {
  const api = new FakeApiServer({ token: 'other-token' });
  await api.start();
  const dir = mkdtempSync(join(tmpdir(), 'pws-k8s-'));
  const kc = join(dir, 'kubeconfig');
  api.writeKubeconfig(kc);
  writeFileSync(kc, readFileSync(kc, 'utf8').replace('token: other-token', 'token: wrong-token'));
  const { src } = await startSource(t, api, dir, { kubeconfigPath: kc, nodeName: 'n', logger: silentLogger, kinds: ['Service'], tuning: { backoffInitialMs: 10, backoffMaxMs: 50 } });
  await waitFor(t, 'two failures', () => src.stats()[0]!.errors >= 2);
  t.notOk(src.hasSynced());
  t.match(src.stats()[0]!.lastError, /HTTP 401/);
});

t.test('401 re-resolves credentials: a rotated token in the kubeconfig is picked up', async (t) => {
  const api = new FakeApiServer({ token: 'new-token' });
  await api.start();
  api.put('services', o.service('default', 'web', '10.96.0.10'));
  const dir = mkdtempSync(join(tmpdir(), 'pws-k8s-'));
  const kc = join(dir, 'kubeconfig');
  api.writeKubeconfig(kc);
  const good = readFileSync(kc, 'utf8');
  writeFileSync(kc, good.replace('token: new-token', 'token: old-token'));
  const { src } = await startSource(t, api, dir, { kubeconfigPath: kc, nodeName: 'n', logger: silentLogger, kinds: ['Service'], tuning: { backoffInitialMs: 10, backoffMaxMs: 50 } });
  await waitFor(t, 'a 401', () => src.stats()[0]!.errors >= 1);
  writeFileSync(kc, good); // the token rotates on disk
  await src.waitForSync(AbortSignal.timeout(30_000));
  t.ok(src.get('Service', 'default/web'), 'synced with the new token');
});

t.test('in-process credentials (client-node imported here) work the same', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  api.put('services', o.service('default', 'web', '10.96.0.10'));
  const dir = mkdtempSync(join(tmpdir(), 'pws-k8s-'));
  const kc = join(dir, 'kubeconfig');
  api.writeKubeconfig(kc);
  const { src } = await startSource(t, api, dir, { kubeconfigPath: kc, nodeName: 'n', logger: silentLogger, kinds: ['Service'], credentials: 'in-process' });
  await src.waitForSync(AbortSignal.timeout(30_000));
  t.ok(src.get('Service', 'default/web'));
});

t.test('a missing kubeconfig fails start with a clear error', async (t) => {
  const src = createKubernetesSource({ kubeconfigPath: '/nonexistent/pws-kubeconfig', nodeName: 'n', logger: silentLogger });
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  await t.rejects(src.start(ac.signal), { code: 'PW_K8S_CONFIG', field: 'kubeconfig', value: '/nonexistent/pws-kubeconfig' });
});

t.test('an idle watch is re-opened from the same resourceVersion, without errors or relist', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  api.put('services', o.service('default', 'web', '10.96.0.10'));
  const dir = mkdtempSync(join(tmpdir(), 'pws-k8s-'));
  const kc = join(dir, 'kubeconfig');
  api.writeKubeconfig(kc);
  const { src } = await startSource(t, api, dir, { kubeconfigPath: kc, nodeName: 'n', logger: silentLogger, kinds: ['Service'], tuning: { idleTimeoutMs: 100 } });
  await src.waitForSync();
  await waitFor(t, 'three watches', () => src.stats()[0]!.watches >= 3);
  const st = src.stats()[0]!;
  t.equal(st.errors, 0);
  t.equal(st.lists, 1);
  const watches = api.requests.filter((r) => r.query.watch === 'true');
  t.ok(watches.every((r) => r.query.resourceVersion === watches[0]!.query.resourceVersion), 'same resourceVersion each time');
});
