/** The ObjectCache indexes behind ClusterState: maintained on every upsert/remove, no copies. */
import t from 'tap';
import { silentLogger } from '../common';
import { ObjectCache } from './cache';
import { clusterStateOf, objectCount } from './cluster-state';
import { compact } from './compact';
import type { ClusterState, StateSource } from './types';

const pod = (name: string, ips: string[], nodeName?: string, rv = '1') =>
  compact('Pod', {
    metadata: { name, namespace: 'ns', uid: `u-${name}`, resourceVersion: rv },
    spec: nodeName === undefined ? {} : { nodeName },
    status: { phase: 'Running', podIPs: ips.map((ip) => ({ ip })) },
  });
const slice = (name: string, service: string | undefined, ip = '10.244.0.5', ns = 'ns') =>
  compact('EndpointSlice', {
    metadata: { name, namespace: ns, labels: service === undefined ? {} : { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ip] }],
    ports: [{ port: 80 }],
  });
const svc = (name: string, clusterIPs: string[], port = 80) =>
  compact('Service', { metadata: { name, namespace: 'ns' }, spec: { clusterIPs, clusterIP: clusterIPs[0], ports: [{ port }] } });

const keys = (objs: readonly { meta: { key: string } }[]): string[] => objs.map((o) => o.meta.key);

function setup(): { cache: ObjectCache; state: ClusterState } {
  const cache = new ObjectCache(silentLogger);
  return { cache, state: cache.state(() => true) };
}

t.test('podsByIP: add, IP change moves the pod, delete, reuse of one IP by two pods', async (t) => {
  const { cache, state } = setup();
  cache.upsert(pod('a', ['10.244.0.5', 'fd00::5'], 'n1'));
  t.same(keys(state.podsByIP('10.244.0.5')), ['ns/a']);
  t.same(keys(state.podsByIP('fd00::5')), ['ns/a'], 'every podIP is indexed');
  cache.upsert(pod('a', ['10.244.0.6'], 'n1', '2'));
  t.same(keys(state.podsByIP('10.244.0.5')), [], 'old IP no longer finds it');
  t.same(keys(state.podsByIP('fd00::5')), []);
  t.same(keys(state.podsByIP('10.244.0.6')), ['ns/a'], 'new IP does');
  t.equal(state.podsByIP('10.244.0.6')[0], cache.get('Pod', 'ns/a'), 'the index holds the current object');
  // A terminating pod still holds the IP while a new pod gets it.
  cache.upsert(pod('b', ['10.244.0.6'], 'n1'));
  t.same(keys(state.podsByIP('10.244.0.6')), ['ns/a', 'ns/b'], 'both pods while the IP is reused');
  cache.remove('Pod', 'ns/a');
  t.same(keys(state.podsByIP('10.244.0.6')), ['ns/b'], 'the old pod leaves, the new one stays');
  cache.remove('Pod', 'ns/b');
  t.same(keys(state.podsByIP('10.244.0.6')), []);
  t.equal(cache.indexSizes().podsByIP, 0, 'no empty buckets left');
});

t.test('podsByIP: a pod without IPs, and the same IP twice, index once', async (t) => {
  const { cache, state } = setup();
  cache.upsert(pod('pending', [], 'n1'));
  t.equal(cache.indexSizes().podsByIP, 0);
  cache.upsert(pod('pending', ['10.244.0.9'], 'n1', '2'));
  t.same(keys(state.podsByIP('10.244.0.9')), ['ns/pending'], 'IP assigned later');
  const same = state.podsByIP('10.244.0.9');
  cache.upsert(pod('pending', ['10.244.0.9'], 'n1', '3'));
  t.equal(state.podsByIP('10.244.0.9').length, 1, 'no duplicate after a no-op update');
  t.equal(state.podsByIP('10.244.0.9'), same, 'the same bucket array (no copy)');
  t.equal(state.podsByIP('10.244.0.9')[0]?.meta.resourceVersion, '3', 'holds the newest version');
});

t.test('podsByNode: add, move to another node, unscheduled, delete', async (t) => {
  const { cache, state } = setup();
  cache.upsert(pod('a', ['10.244.0.5'], 'n1'));
  cache.upsert(pod('b', ['10.244.0.6'], 'n1'));
  cache.upsert(pod('c', [], undefined));
  t.same(keys(state.podsByNode('n1')), ['ns/a', 'ns/b']);
  t.same(keys(state.podsByNode('')), [], 'unscheduled pods are not indexed');
  cache.upsert(pod('a', ['10.244.1.5'], 'n2', '2'));
  t.same(keys(state.podsByNode('n1')), ['ns/b']);
  t.same(keys(state.podsByNode('n2')), ['ns/a']);
  cache.upsert(pod('c', [], 'n2', '2'));
  t.same(keys(state.podsByNode('n2')), ['ns/a', 'ns/c'], 'scheduled later');
  cache.upsert(pod('b', ['10.244.0.7'], 'n1', '2'));
  t.same(keys(state.podsByNode('n1')), ['ns/b'], 'an update that keeps the node keeps one entry');
  cache.remove('Pod', 'ns/b');
  t.same(keys(state.podsByNode('n1')), []);
  cache.remove('Pod', 'ns/a');
  cache.remove('Pod', 'ns/c');
  t.same(cache.indexSizes(), { slicesByService: 0, podsByIP: 0, podsByNode: 0, servicesByClusterIP: 0 });
});

t.test('endpointSlicesByService: label key, label change, label removed, namespaces apart, delete', async (t) => {
  const { cache, state } = setup();
  cache.upsert(slice('web-1', 'web'));
  cache.upsert(slice('web-2', 'web', '10.244.0.6'));
  cache.upsert(slice('web-x', 'web', '10.244.0.7', 'other'));
  cache.upsert(slice('orphan', undefined));
  t.same(keys(state.endpointSlicesByService('ns/web')), ['ns/web-1', 'ns/web-2']);
  t.same(keys(state.endpointSlicesByService('other/web')), ['other/web-x'], 'namespace is part of the key');
  t.same(keys(state.endpointSlicesByService('ns/api')), []);
  cache.upsert(slice('web-2', 'api', '10.244.0.6'));
  t.same(keys(state.endpointSlicesByService('ns/web')), ['ns/web-1'], 'slice relabelled: gone from the old Service');
  t.same(keys(state.endpointSlicesByService('ns/api')), ['ns/web-2'], 'and found under the new one');
  cache.upsert(slice('web-1', undefined));
  t.same(keys(state.endpointSlicesByService('ns/web')), [], 'label removed');
  cache.upsert(slice('web-1', 'web', '10.244.0.8'));
  t.same(keys(state.endpointSlicesByService('ns/web')), ['ns/web-1'], 'label back');
  t.equal(state.endpointSlicesByService('ns/web')[0], cache.get('EndpointSlice', 'ns/web-1'), 'current object');
  cache.remove('EndpointSlice', 'ns/web-1');
  cache.remove('EndpointSlice', 'ns/web-2');
  cache.remove('EndpointSlice', 'other/web-x');
  t.equal(cache.indexSizes().slicesByService, 0);
});

t.test('servicesByClusterIP: dual stack, headless not indexed, IP change, delete', async (t) => {
  const { cache, state } = setup();
  cache.upsert(svc('web', ['10.96.0.10', 'fd00:96::10']));
  cache.upsert(svc('headless', ['None']));
  t.same(keys(state.servicesByClusterIP('10.96.0.10')), ['ns/web']);
  t.same(keys(state.servicesByClusterIP('fd00:96::10')), ['ns/web']);
  t.same(keys(state.servicesByClusterIP('None')), [], 'headless has no ClusterIP');
  cache.upsert(svc('web', ['10.96.0.11']));
  t.same(keys(state.servicesByClusterIP('10.96.0.10')), []);
  t.same(keys(state.servicesByClusterIP('fd00:96::10')), []);
  t.same(keys(state.servicesByClusterIP('10.96.0.11')), ['ns/web']);
  cache.upsert(svc('web', ['10.96.0.11'], 81));
  t.equal(state.servicesByClusterIP('10.96.0.11').length, 1, 'port change: still one entry');
  t.equal((state.servicesByClusterIP('10.96.0.11')[0] as { ports: { port: number }[] }).ports[0]!.port, 81);
  cache.remove('Service', 'ns/web');
  t.same(keys(state.servicesByClusterIP('10.96.0.11')), []);
  cache.remove('Service', 'ns/headless');
  t.equal(cache.indexSizes().servicesByClusterIP, 0);
});

t.test('deleteMissing keeps the indexes in step', async (t) => {
  const { cache, state } = setup();
  cache.upsert(svc('a', ['10.96.0.1']));
  cache.upsert(svc('b', ['10.96.0.2']));
  cache.deleteMissing('Service', new Set(['ns/b']));
  t.same(keys(state.servicesByClusterIP('10.96.0.1')), []);
  t.same(keys(state.servicesByClusterIP('10.96.0.2')), ['ns/b']);
});

t.test('handlers see the indexes already updated for their event', async (t) => {
  const { cache, state } = setup();
  const seen: string[][] = [];
  cache.onEvent((e) => {
    if (e.kind === 'Pod') seen.push(keys(state.podsByIP('10.244.0.5')));
  });
  cache.upsert(pod('a', ['10.244.0.5'], 'n1'));
  cache.remove('Pod', 'ns/a');
  t.same(seen, [['ns/a'], []]);
});

t.test('values() and size() iterate the table without copying it', async (t) => {
  const { cache, state } = setup();
  for (let i = 0; i < 100; i++) cache.upsert(svc(`s${i}`, [`10.96.1.${i}`]));
  t.equal(state.size('Service'), 100);
  t.equal(state.size('Pod'), 0, 'an empty kind');
  t.same([...state.values('Pod')], []);
  let n = 0;
  for (const s of state.values('Service')) {
    t.equal(s.kind, 'Service');
    n++;
  }
  t.equal(n, 100);
  const it = state.values('Service');
  t.equal(typeof it.next, 'function', 'an iterator');
  t.notOk(Array.isArray(it), 'not an array copy');
  t.equal(cache.state(() => true), state, 'one view per cache');
});

t.test('clusterStateOf uses the source state() when there is one, and scans otherwise', async (t) => {
  const cache = new ObjectCache(silentLogger);
  const indexed = cache.state(() => true);
  const fake = { state: () => indexed } as unknown as StateSource;
  t.equal(clusterStateOf(fake), indexed, 'the source’s own indexed view');
  cache.upsert(svc('a', ['10.96.0.1']));
  t.equal(objectCount(fake, 'Service'), 1);
  const scanning = {
    hasSynced: () => false,
    list: (kind: string) => (kind === 'Service' ? cache.list('Service') : []),
    get: (kind: 'Service', key: string) => cache.get(kind, key),
  } as unknown as StateSource;
  const view = clusterStateOf(scanning);
  t.same(keys(view.servicesByClusterIP('10.96.0.1')), ['ns/a'], 'scanning fallback answers the same');
  t.equal(view.size('Service'), 1);
  t.equal(objectCount(scanning, 'Service'), 1);
});
