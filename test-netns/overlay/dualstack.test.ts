/**
 * Dual-stack over an IPv4 underlay with vxlan: every node has a v4 and a v6 pod CIDR; the v6
 * pod network goes through the same pw.1 (v6 VTEP address, neighbour, onlink route) and the
 * same FDB entry. Pods ping each other over IPv6 across nodes, n3 one routed hop away.
 * An IPv6 underlay: v6-underlay.test.ts; IPv6 host-gw, IPv6 DirectRouting, IPv6-only: ipv6.test.ts.
 */
import { execOk, labTest } from '../harness';
import { buildCluster, entries, ping, until, type OCluster } from './helpers';

labTest('dual-stack (vxlan over IPv4): pods reach each other over IPv6 across nodes', { prefix: 'pwo-ds', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 120_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'vxlan', dualStack: true, podsPerNode: [1, 1, 1] });
    const [n1] = c.nodes as [OCluster['nodes'][0]];
    const [a, b, d] = c.pods as [OCluster['pods'][0], OCluster['pods'][0], OCluster['pods'][0]];
    t.ok(a.ip6 && b.ip6 && d.ip6, `pods got v6 addresses: ${a.ip6} ${b.ip6} ${d.ip6}`);
    const r6 = await until(async () => (await execOk(n1.lab.ns, ['ip', '-6', 'route', 'show', 'proto', '77'])).replace(/ metric \d+/g, ''), (s) => s.includes('fd00:10:244:3::/64'));
    t.match(r6.value, /fd00:10:244:2::\/64 via fd00:10:244:2:: dev pw\.1 .*onlink/, 'n1: v6 route to n2 via its v6 VTEP address, onlink');
    const e = await entries(n1.lab.ns);
    t.equal(e.fdb.length, 2, 'n1: one FDB entry per peer serves both families');
    const n6 = await execOk(n1.lab.ns, ['ip', '-6', 'neigh', 'show', 'dev', 'pw.1', 'nud', 'permanent']);
    t.match(n6, /fd00:10:244:3:: lladdr 0a:58:c6:13:00:03 PERMANENT/, 'n1: permanent v6 neighbour for n3');
    for (const [what, from, to] of [
      ['n1 -> n2', a, b.ip6],
      ['n1 -> n3 (routed underlay)', a, d.ip6],
      ['n3 -> n2', d, b.ip6],
    ] as const) {
      // Bounded: the pods' v6 addresses finish DAD first.
      const r = await until(() => ping(from.ns, to!, { count: 1, waitS: 1 }), (x) => x.ok, 40);
      t.ok(r.ok, `ping -6 ${what}: ${from.ip6} -> ${to}`, { output: r.value.output });
    }
    const v4 = await ping(a.ns, d.ip, { count: 1 });
    t.ok(v4.ok, 'IPv4 still works alongside', { output: v4.output });
  } finally {
    c?.run.remove();
  }
});
