/**
 * host-gw and vxlan+DirectRouting across 3 real podwireds, n3 one routed hop away:
 * - host-gw: n1 <-> n2 route directly (ping, TCP, source preserved); n3 is not on-link, which
 *   is an error on that peer alone, shown in the status of both ends.
 * - vxlan with DirectRouting: n1 <-> n2 get a direct route, every pair with n3 is encapsulated,
 *   both ends of each pair agree, and traffic flows on every path.
 */
import { iptablesBinaries } from '../../src/kernel';
import { execOk, labTest } from '../harness';
import { buildCluster, entries, OUTSIDE_IP, overlayStatus, ping, tcpSource, until, type OCluster } from './helpers';

type Peer = { node: string; encapsulated: boolean; mode: string };

labTest('host-gw: same-subnet peers routed, an off-link peer is refused alone', { prefix: 'pwo-hg', requires: ['veth', 'bridge', 'nftables'], timeout: 120_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'host-gw', podsPerNode: [1, 1, 1] });
    const [n1, n2, n3] = c.nodes as [OCluster['nodes'][0], OCluster['nodes'][0], OCluster['nodes'][0]];
    const [a, b, d] = c.pods as [OCluster['pods'][0], OCluster['pods'][0], OCluster['pods'][0]];
    const e1 = await until(() => entries(n1.lab.ns), (e) => e.routes.length === 1);
    t.same(e1.value.routes, ['10.244.2.0/24 via 198.18.0.2 dev eth0'], 'n1: one route via n2\'s node IP, none for the off-link n3');
    t.same(e1.value.neigh, [], 'no VXLAN device, no neighbour entries');
    const p = await ping(a.ns, b.ip, { count: 2 });
    t.ok(p.ok, 'ping n1 -> n2', { output: p.output });
    const tcp = await tcpSource(lab, b.ns, b.ip, a.ns, 8090);
    t.ok(tcp.ok, 'TCP n1 -> n2', { output: tcp.output });
    t.equal(tcp.source, a.ip, 'source IP preserved');
    const back = await tcpSource(lab, a.ns, a.ip, b.ns, 8091);
    t.ok(back.ok && back.source === b.ip, 'TCP n2 -> n1, source preserved', { output: back.output });
    for (const [n, other] of [[n1, 'n3'], [n3, 'n1']] as const) {
      const st = await overlayStatus(n);
      const bad = (st.invalidPeers as { node: string; reason: string }[]).find((x) => x.node === other);
      t.match(bad?.reason, /not on-link/, `${n.name}: ${other} is refused as not on-link`);
    }
    const st3 = await overlayStatus(n3);
    t.same(st3.peers, [], 'n3 has no peer it can reach without a gateway');
    const none = await ping(d.ns, a.ip, { count: 1, waitS: 1 });
    t.notOk(none.ok, 'negative control: n3 -> n1 has no path with host-gw', { output: none.output });
    const pn2 = await overlayStatus(n2);
    t.same((pn2.peers as Peer[]).map((x) => [x.node, x.mode]), [['n1', 'host-gw']], 'n2: n1 via host-gw');
  } finally {
    c?.run.remove();
  }
});

labTest('vxlan + DirectRouting (egress in iptables): direct where both ends share a subnet, encapsulated otherwise', { prefix: 'pwo-dr', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 120_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'vxlan', env: { PODWIRE_DIRECT_ROUTING: 'true', PODWIRE_EGRESS_MODE: 'iptables' }, podsPerNode: [1, 1, 1] });
    const [n1, n2, n3] = c.nodes as [OCluster['nodes'][0], OCluster['nodes'][0], OCluster['nodes'][0]];
    const [a, b, d] = c.pods as [OCluster['pods'][0], OCluster['pods'][0], OCluster['pods'][0]];
    const e1 = await until(() => entries(n1.lab.ns), (e) => e.routes.length === 2);
    t.same(e1.value.routes.sort(), ['10.244.2.0/24 via 198.18.0.2 dev eth0', '10.244.3.0/24 via 10.244.3.0 dev pw.1 onlink'], 'n1: n2 direct, n3 encapsulated');
    t.equal(e1.value.neigh.filter((l) => l.includes('PERMANENT')).length, 1, 'n1: a neighbour entry only for the encapsulated peer');
    t.equal(e1.value.fdb.length, 1, 'n1: an FDB entry only for the encapsulated peer');
    const want: Record<string, [string, boolean][]> = {
      n1: [['n2', false], ['n3', true]],
      n2: [['n1', false], ['n3', true]],
      n3: [['n1', true], ['n2', true]],
    };
    for (const n of [n1, n2, n3]) {
      const st = await overlayStatus(n);
      t.same((st.peers as Peer[]).map((x) => [x.node, x.encapsulated]), want[n.name], `${n.name}: the same decision as each peer makes about it`);
    }
    const paths: [string, OCluster['pods'][0], OCluster['pods'][0]][] = [
      ['n1 -> n2 (direct)', a, b],
      ['n2 -> n1 (direct)', b, a],
      ['n1 -> n3 (vxlan)', a, d],
      ['n3 -> n2 (vxlan)', d, b],
    ];
    for (const [what, from, to] of paths) {
      const r = await ping(from.ns, to.ip, { count: 2 });
      t.ok(r.ok, `ping ${what}`, { output: r.output });
    }
    const t1 = await tcpSource(lab, b.ns, b.ip, a.ns, 8092);
    t.ok(t1.ok && t1.source === a.ip, 'TCP direct path, source preserved', { output: t1.output });
    const t2 = await tcpSource(lab, a.ns, a.ip, d.ns, 8093);
    t.ok(t2.ok && t2.source === d.ip, 'TCP encapsulated path, source preserved', { output: t2.output });
    // Egress through the iptables chains.
    t.match(await execOk(n1.lab.ns, [iptablesBinaries(4).save, '-t', 'nat']), /-A PODWIRE-OVL-POSTRTG -s 10\.244\.0\.0\/16 -j MASQUERADE --random-fully/, 'iptables mode: our nat chain');
    t.notMatch(await execOk(n1.lab.ns, ['nft', 'list', 'tables']), /podwire-overlay/, 'and no nftables table');
    const eg = await tcpSource(lab, c.outside, OUTSIDE_IP, d.ns, 8094);
    t.ok(eg.ok, 'TCP pod on n3 -> outside', { output: eg.output });
    t.equal(eg.source, n3.ip, 'masqueraded to n3\'s node IP');
  } finally {
    c?.run.remove();
  }
});
