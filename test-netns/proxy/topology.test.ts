/**
 * Topology-aware routing against the real kernel: two nodes in zones z1 and z2, each with
 * two pods, and each running the proxier. The Service's EndpointSlice hints every
 * endpoint for its own zone (what the EndpointSlice controller writes for
 * `service.kubernetes.io/topology-mode: Auto` / `trafficDistribution: PreferClose`).
 * Without a zone label every endpoint is used (the routes between the nodes work); with
 * the labels a client on a node reaches only its zone's endpoints.
 */
import { labTest } from '../harness';
import { slice, svc } from '../../src/proxy/testing';
import { ZONE_LABEL } from '../../src/proxy/model';
import type { EndpointSliceObject, NodeObject } from '../../src/k8s/types';
import { get, namedServer, proxyHost } from './helpers';

function node(name: string, zone: string | undefined, podCIDR: string): NodeObject {
  return {
    kind: 'Node',
    meta: { key: name, name, namespace: '', uid: `u-${name}`, resourceVersion: '1', labels: zone ? { [ZONE_LABEL]: zone } : {}, annotations: {} },
    podCIDRs: [podCIDR],
    addresses: [],
    unschedulable: false,
  };
}

labTest('nftables proxy: topology hints keep a client on zone z1 on zone-z1 endpoints', { prefix: 'qn-topo', requires: ['veth', 'nftables'], timeout: 120_000 }, async (t, lab) => {
  const ul = await lab.addUnderlay();
  const a = await lab.addNode(ul);
  const b = await lab.addNode(ul);
  await lab.ip(a.ns, ['route', 'add', '10.244.2.0/24', 'via', b.ip]);
  await lab.ip(b.ns, ['route', 'add', '10.244.1.0/24', 'via', a.ip]);
  const eps: { ip: string; node: string; zone: string }[] = [];
  for (const [n, nodeName, zone, sub] of [[a, 'node-a', 'z1', 1], [b, 'node-b', 'z2', 2]] as const) {
    for (let i = 2; i <= 3; i++) {
      const p = await lab.addPod(`${nodeName}-p${i}`);
      await lab.wirePod(p, n, { address: `10.244.${sub}.${i}`, gateway: `10.244.${sub}.1` });
      await namedServer(lab, p, `${zone}-p${i}`);
      eps.push({ ip: `10.244.${sub}.${i}`, node: nodeName, zone });
    }
  }
  const clientA = await lab.addPod('ca');
  await lab.wirePod(clientA, a, { address: '10.244.1.10', gateway: '10.244.1.1' });
  const clientB = await lab.addPod('cb');
  await lab.wirePod(clientB, b, { address: '10.244.2.10', gateway: '10.244.2.1' });
  const hostA = await proxyHost(a, {}, 'node-a');
  t.teardown(() => hostA.close());
  const hostB = await proxyHost(b, {}, 'node-b');
  t.teardown(() => hostB.close());

  const s0 = svc('ns/web', '10.96.0.40', { ports: [{ name: 'http', port: 80 }] });
  const s = { ...s0, meta: { ...s0.meta, annotations: { 'service.kubernetes.io/topology-mode': 'Auto' } } };
  const sl: EndpointSliceObject = slice('ns/web', eps.map((e) => ({ ip: e.ip, node: e.node })), [{ name: 'http', port: 8080 }]);
  sl.endpoints.forEach((e, i) => {
    e.zone = eps[i]!.zone;
    e.hints = { forZones: [eps[i]!.zone], forNodes: [] };
  });
  const zonesSeen = async (client: string): Promise<Set<string>> => {
    const seen = new Set<string>();
    for (let i = 0; i < 24; i++) {
      const r = await get(client, 'http://10.96.0.40/');
      t.ok(r.ok, `GET from ${client}: ${r.err}`);
      seen.add(r.body.split(' ')[0]!);
    }
    return seen;
  };

  // Nodes without the zone label: hints are ignored, every endpoint is used (cross-node too).
  for (const h of [hostA, hostB]) await h.apply(node('node-a', undefined, '10.244.1.0/24'), node('node-b', undefined, '10.244.2.0/24'), s, sl);
  const before = await zonesSeen(clientA);
  t.ok([...before].some((n) => n.startsWith('z2-')), `without a zone label node A also reaches zone z2 endpoints: ${[...before].sort().join(',')}`);

  for (const h of [hostA, hostB]) await h.apply(node('node-a', 'z1', '10.244.1.0/24'), node('node-b', 'z2', '10.244.2.0/24'));
  const fromA = await zonesSeen(clientA);
  t.same([...fromA].sort(), ['z1-p2', 'z1-p3'], 'a client on node A (zone z1) reaches only the zone-z1 endpoints, both of them');
  const fromB = await zonesSeen(clientB);
  t.same([...fromB].sort(), ['z2-p2', 'z2-p3'], 'a client on node B (zone z2) reaches only the zone-z2 endpoints');

  // Fallback: one ready endpoint loses its hint → hints are ignored everywhere.
  const partial: EndpointSliceObject = { ...sl, endpoints: sl.endpoints.map((e, i) => (i === 3 ? { ...e, hints: undefined } : e)) };
  await hostA.apply(partial);
  const fallback = await zonesSeen(clientA);
  t.ok([...fallback].some((n) => n.startsWith('z2-')), `an endpoint without a hint: node A uses every endpoint again (${[...fallback].sort().join(',')})`);
});
