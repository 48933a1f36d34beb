import t from 'tap';
import { compact } from '../k8s/compact';
import type { EndpointSliceObject } from '../k8s/types';
import { fakeKernel } from '../kernel/testing';
import { FakeClock } from '../daemon/testing/fake-clock';
import { buildServiceModel, ZONE_LABEL } from './model';
import { proxierHarness, slice, svc } from './testing';

const signal = new AbortController().signal;

/** A slice whose endpoints carry hints: [ip, node, zone hints, ready?]. */
function hinted(key: string, eps: [string, string, string[] | undefined, boolean?][]): EndpointSliceObject {
  const s = slice(key, eps.map(([ip, node, , ready]) => ({ ip, node, ready: ready ?? true })), [{ name: 'http', port: 8080 }]);
  s.endpoints.forEach((e, i) => {
    const z = eps[i]![2];
    if (z) e.hints = { forZones: z, forNodes: [] };
  });
  return s;
}
const s1 = svc('ns/a', '10.96.0.10', { ports: [{ name: 'http', port: 80 }] });
const ips = (m: ReturnType<typeof buildServiceModel>): string[] => m.ports[0]!.cluster.map((e) => e.ip);

t.test('hints are parsed from the API object, trafficDistribution too', async (t) => {
  const raw = {
    metadata: { name: 'a-1', namespace: 'ns', labels: { 'kubernetes.io/service-name': 'a' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.244.1.2'], zone: 'z1', hints: { forZones: [{ name: 'z1' }], forNodes: [{ name: 'n1' }] } }, { addresses: ['10.244.2.2'] }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
  const s = compact('EndpointSlice', raw);
  t.same(s.endpoints[0]!.hints, { forZones: ['z1'], forNodes: ['n1'] });
  t.equal(s.endpoints[1]!.hints, undefined);
  const sv = compact('Service', { metadata: { name: 'a', namespace: 'ns' }, spec: { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ port: 80 }], trafficDistribution: 'PreferClose' } });
  t.equal(sv.trafficDistribution, 'PreferClose');
  t.throws(() => compact('EndpointSlice', { ...raw, endpoints: [{ addresses: ['10.244.1.2'], hints: { forZones: [{}] } }] }), /endpoints\[0\]\.hints\.forZones\[0\]\.name/);
});

t.test('zone hints narrow cluster endpoints, with kube-proxy fallbacks', async (t) => {
  const all = hinted('ns/a', [['10.244.1.2', 'n1', ['z1']], ['10.244.2.2', 'n2', ['z2']], ['10.244.3.2', 'n3', ['z2']]]);
  const m = buildServiceModel(s1, [all], 'n1', [], { zone: 'z1' });
  t.same(ips(m), ['10.244.1.2'], 'only the endpoint hinted for our zone');
  t.equal(m.ports[0]!.topology, 'PreferSameZone');
  t.same(ips(buildServiceModel(s1, [all], 'n2', [], { zone: 'z2' })), ['10.244.2.2', '10.244.3.2']);
  t.same(ips(buildServiceModel(s1, [all], 'n1', [], {})), ['10.244.1.2', '10.244.2.2', '10.244.3.2'], 'a node without the zone label ignores hints');
  t.same(ips(buildServiceModel(s1, [all], 'n9', [], { zone: 'z9' })), ['10.244.1.2', '10.244.2.2', '10.244.3.2'], 'no endpoint hinted for our zone: all of them');
  const partial = hinted('ns/a', [['10.244.1.2', 'n1', ['z1']], ['10.244.2.2', 'n2', undefined]]);
  t.same(ips(buildServiceModel(s1, [partial], 'n1', [], { zone: 'z1' })), ['10.244.1.2', '10.244.2.2'], 'a ready endpoint without hints: hints ignored');
  const notReadyUnhinted = hinted('ns/a', [['10.244.1.2', 'n1', ['z1']], ['10.244.2.2', 'n2', ['z2']], ['10.244.4.2', 'n2', undefined, false]]);
  t.same(ips(buildServiceModel(s1, [notReadyUnhinted], 'n1', [], { zone: 'z1' })), ['10.244.1.2'], 'only ready endpoints need hints');
  const svcLocal = svc('ns/a', '10.96.0.10', { ports: [{ name: 'http', port: 80 }], type: 'NodePort', externalTrafficPolicy: 'Local' });
  const ml = buildServiceModel(svcLocal, [all], 'n2', [], { zone: 'z1' });
  t.same(ml.ports[0]!.local.map((e) => e.ip), ['10.244.2.2'], 'the Local policy ignores topology');
  // Node hints (PreferSameNode) win when every ready endpoint has one naming a node and one names ours.
  const byNode = hinted('ns/a', [['10.244.1.2', 'n1', ['z1']], ['10.244.1.3', 'n1b', ['z1']]]);
  byNode.endpoints[0]!.hints = { forZones: ['z1'], forNodes: ['n1'] };
  byNode.endpoints[1]!.hints = { forZones: ['z1'], forNodes: ['n1b'] };
  const mn = buildServiceModel(s1, [byNode], 'n1', [], { zone: 'z1' });
  t.same(ips(mn), ['10.244.1.2']);
  t.equal(mn.ports[0]!.topology, 'PreferSameNode');
});

t.test('the proxier follows our Node zone label and re-renders when it changes', async (t) => {
  const k = fakeKernel();
  const h = proxierHarness(k, new FakeClock(), { config: { nodeName: 'n1' } });
  const node = (zone: string): Parameters<typeof h.apply>[0] => ({
    kind: 'Node',
    meta: { key: 'n1', name: 'n1', namespace: '', uid: 'u-n1', resourceVersion: '1', labels: { [ZONE_LABEL]: zone }, annotations: {} },
    podCIDRs: ['10.244.1.0/24'],
    addresses: [],
    unschedulable: false,
  });
  h.apply(node('z1'));
  h.apply(s1);
  h.apply(hinted('ns/a', [['10.244.1.2', 'n1', ['z1']], ['10.244.2.2', 'n2', ['z2']]]));
  await h.proxier.sync(signal);
  const eps = (): string[] => [...h.proxier.ruleset.appliedOf('endpoints4-tcp').values()].sort();
  t.same(eps(), ['10.244.1.2 . 8080']);
  t.equal(h.apply(node('z2')), true, 'a zone change requests a sync');
  await h.proxier.sync(signal);
  t.same(eps(), ['10.244.2.2 . 8080'], 'now the zone-z2 endpoint');
  const sl = hinted('ns/a', [['10.244.1.2', 'n1', ['z1']], ['10.244.2.2', 'n2', undefined]]);
  t.equal(h.apply(sl), true, 'a hint change is a change');
  await h.proxier.sync(signal);
  t.same(eps(), ['10.244.1.2 . 8080', '10.244.2.2 . 8080'], 'an endpoint lost its hint: all endpoints');
});
