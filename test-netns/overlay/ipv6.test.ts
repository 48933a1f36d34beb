/**
 * IPv6 in the overlay (issue #8), with real podwireds and pods made by the CNI binary:
 * - host-gw, dual-stack: v4 and v6 node IPs on one L2 segment, a v6 route per peer via its v6
 *   node IP; n3 (behind a router) is not on-link and is refused alone;
 * - vxlan + DirectRouting over IPv6: n1 <-> n2 share the v6 underlay subnet and get a direct
 *   v6 route, n3 is one routed hop away and is encapsulated; both ends of each pair agree;
 * - IPv6-only, 2 nodes, vxlan and host-gw: only v6 pod CIDRs and v6 InternalIPs, the nodes'
 *   IPv4 addresses removed; the conflist, subnet.env and ip6 masquerade are checked.
 * Traffic: ping -6 and TCP (nc, the source address as the server saw it) between pods.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { exec, execOk, labTest } from '../harness';
import { buildCluster, entries, linkPackets, NODE_IP6, OUTSIDE_IP6, overlayStatus, ping, tcpSource, until, type OCluster, type OPod } from './helpers';

type Peer = { node: string; encapsulated: boolean; mode: string; modes: { ipv4?: string; ipv6?: string } };

const plain = (r: string): string => r.replace(/ pref medium/, '');

/** Ping until it answers (bounded): the pods' v6 addresses may still be finishing DAD. */
async function ping6(from: OPod, to: string): Promise<{ ok: boolean; output: string }> {
  const r = await until(() => ping(from.ns, to, { count: 1, waitS: 1 }), (x) => x.ok, 40);
  return r.value;
}

labTest('IPv6 host-gw (dual-stack): v6 routes via the peers\' v6 node IPs, the off-link peer refused alone', { prefix: 'hov6-hg', requires: ['veth', 'bridge', 'nftables'], timeout: 150_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'host-gw', dualStack: true, ipv6Underlay: true, podsPerNode: [1, 1, 1] });
    const [n1, n2, n3] = c.nodes as [OCluster['nodes'][0], OCluster['nodes'][0], OCluster['nodes'][0]];
    const [a, b, d] = c.pods as [OPod, OPod, OPod];
    t.ok(a.ip6 && b.ip6 && d.ip6, `pods got v6 addresses: ${a.ip6} ${b.ip6} ${d.ip6}`);
    const e6 = await until(() => entries(n1.lab.ns, 6), (e) => e.routes.length === 1);
    // `ip route show proto 77` lists ours only (and so does not print the proto).
    t.same(e6.value.routes.map(plain), ['fd00:10:244:2::/64 via fd00:198:18::2 dev eth0'], 'n1: one v6 route of ours, via n2\'s v6 node IP');
    t.same((await entries(n1.lab.ns, 4)).routes, ['10.244.2.0/24 via 198.18.0.2 dev eth0'], 'and the v4 route beside it');
    for (const [n, other] of [[n1, 'n3'], [n3, 'n1']] as const) {
      const st = await overlayStatus(n);
      const bad = (st.invalidPeers as { node: string; reason: string }[]).find((x) => x.node === other);
      t.match(bad?.reason, /not on-link/, `${n.name}: ${other} is refused as not on-link`);
    }
    const st2 = await overlayStatus(n2);
    t.same((st2.peers as Peer[]).map((x) => [x.node, x.modes]), [['n1', { ipv4: 'host-gw', ipv6: 'host-gw' }]], 'n2: n1 via host-gw in both families');
    const p = await ping6(a, b.ip6!);
    t.ok(p.ok, `ping -6 n1 -> n2: ${a.ip6} -> ${b.ip6}`, { output: p.output });
    const tcp = await tcpSource(lab, b.ns, b.ip6!, a.ns, 8190);
    t.ok(tcp.ok, 'TCP over IPv6 n1 -> n2', { output: tcp.output });
    t.equal(tcp.source, a.ip6, 'v6 source address preserved (no masquerade between pods)');
    const back = await tcpSource(lab, a.ns, a.ip6!, b.ns, 8191);
    t.ok(back.ok && back.source === b.ip6, 'TCP over IPv6 n2 -> n1, source preserved', { output: back.output });
    const none = await ping(d.ns, a.ip6!, { count: 1, waitS: 1 });
    t.notOk(none.ok, 'negative control: n3 -> n1 has no v6 path with host-gw', { output: none.output });
    // Egress: the outside host has no route to the pods; it answers only because of ip6 masquerade.
    const eg = await tcpSource(lab, c.outside, OUTSIDE_IP6, a.ns, 8192);
    t.ok(eg.ok, 'TCP pod on n1 -> outside over IPv6', { output: eg.output });
    t.equal(eg.source, NODE_IP6[0], 'masqueraded to n1\'s v6 node IP');
  } finally {
    c?.run.remove();
  }
});

labTest('vxlan + DirectRouting over IPv6: direct v6 route on a shared v6 subnet, encapsulated across the router', { prefix: 'hov6-dr', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 150_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'vxlan', dualStack: true, ipv6Underlay: true, env: { PODWIRE_DIRECT_ROUTING: 'true' }, podsPerNode: [1, 1, 1] });
    const [n1, n2, n3] = c.nodes as [OCluster['nodes'][0], OCluster['nodes'][0], OCluster['nodes'][0]];
    const [a, b, d] = c.pods as [OPod, OPod, OPod];
    const e6 = await until(() => entries(n1.lab.ns, 6), (e) => e.routes.length === 2);
    t.same(e6.value.routes.map(plain).sort(), ['fd00:10:244:2::/64 via fd00:198:18::2 dev eth0', 'fd00:10:244:3::/64 via fd00:10:244:3:: dev pw-v6.1 onlink'], 'n1: n2 direct over IPv6, n3 encapsulated over the IPv6 device');
    t.match(await execOk(n1.lab.ns, ['ip', '-6', 'route', 'get', b.ip6!]), /dev eth0/, 'n1: a v6 packet to n2\'s pod leaves on the underlay, not pw.1');
    const want: Record<string, [string, Peer['modes']][]> = {
      n1: [['n2', { ipv4: 'direct', ipv6: 'direct' }], ['n3', { ipv4: 'vxlan', ipv6: 'vxlan' }]],
      n2: [['n1', { ipv4: 'direct', ipv6: 'direct' }], ['n3', { ipv4: 'vxlan', ipv6: 'vxlan' }]],
      n3: [['n1', { ipv4: 'vxlan', ipv6: 'vxlan' }], ['n2', { ipv4: 'vxlan', ipv6: 'vxlan' }]],
    };
    for (const n of [n1, n2, n3]) {
      const st = await overlayStatus(n);
      t.same((st.peers as Peer[]).map((x) => [x.node, x.modes]), want[n.name], `${n.name}: the same decision as each peer makes about it`);
    }
    const txBefore = await vxlanTx(n1.lab.ns);
    for (const [what, from, to] of [
      ['n1 -> n2 (direct)', a, b],
      ['n2 -> n1 (direct)', b, a],
    ] as const) {
      const r = await ping6(from, to.ip6!);
      t.ok(r.ok, `ping -6 ${what}`, { output: r.output });
    }
    const t1 = await tcpSource(lab, b.ns, b.ip6!, a.ns, 8193);
    t.ok(t1.ok && t1.source === a.ip6, 'TCP over IPv6, direct path, source preserved', { output: t1.output });
    t.same(await vxlanTx(n1.lab.ns), txBefore, 'n1: the direct v6 traffic went through neither pw.1 nor pw-v6.1');
    for (const [what, from, to] of [
      ['n1 -> n3 (vxlan)', a, d],
      ['n3 -> n2 (vxlan)', d, b],
    ] as const) {
      const r = await ping6(from, to.ip6!);
      t.ok(r.ok, `ping -6 ${what}`, { output: r.output });
    }
    const t2 = await tcpSource(lab, a.ns, a.ip6!, d.ns, 8194);
    t.ok(t2.ok && t2.source === d.ip6, 'TCP over IPv6, encapsulated path, source preserved', { output: t2.output });
    const txAfter = await vxlanTx(n1.lab.ns);
    t.ok(txAfter.pw6 > txBefore.pw6, 'n1: the encapsulated v6 traffic went through pw-v6.1 (the IPv6 VXLAN device)', { txBefore, txAfter });
  } finally {
    c?.run.remove();
  }
});

/** Packets sent on our two VXLAN devices. */
async function vxlanTx(ns: string): Promise<{ pw1: number; pw6: number }> {
  return { pw1: (await linkPackets(ns, 'pw.1')).tx, pw6: (await linkPackets(ns, 'pw-v6.1')).tx };
}

for (const backend of ['vxlan', 'host-gw'] as const) {
  labTest(`IPv6-only cluster (${backend}, 2 nodes): no IPv4 pod CIDR or node IP, pods reach each other and the outside over IPv6`, { prefix: `hov6-o${backend === 'vxlan' ? 'v' : 'h'}`, requires: ['veth', 'bridge', 'nftables', ...(backend === 'vxlan' ? (['vxlan'] as const) : [])], timeout: 150_000 }, async (t, lab) => {
    let c: OCluster | undefined;
    try {
      c = await buildCluster(lab, { backend, ipv6Only: true, nodeCount: 2, podsPerNode: [1, 1] });
      const [n1, n2] = c.nodes as [OCluster['nodes'][0], OCluster['nodes'][0]];
      const [a, b] = c.pods as [OPod, OPod];
      t.ok(a.ip.includes(':') && b.ip.includes(':'), `pods got only v6 addresses: ${a.ip} ${b.ip}`);
      t.notMatch(await execOk(a.ns, ['ip', '-4', 'addr', 'show', 'dev', 'eth0']), /inet /, 'no IPv4 address in the pod');
      const st = await overlayStatus(n1);
      t.equal(st.waitingFor, undefined, 'n1 is not waiting for an IPv4 pod CIDR');
      t.same(st.invalidPeers, [], 'no peer refused');
      const mtu = backend === 'vxlan' ? 1430 : 1500;
      t.equal(st.mtu, mtu, `pod MTU ${mtu} (${backend === 'vxlan' ? 'IPv6 underlay − 70' : 'the underlay\'s'})`);
      const conf = JSON.parse(readFileSync(n1.daemon.conflistPath, 'utf8')) as { plugins: { mtu?: number; ipam?: { ranges?: { subnet: string }[][]; routes?: { dst: string }[] } }[] };
      t.same(conf.plugins[0]!.ipam?.ranges, [[{ subnet: 'fd00:10:244:1::/64' }]], 'conflist: one IPv6 range');
      t.same(conf.plugins[0]!.ipam?.routes, [{ dst: '::/0' }], 'conflist: an IPv6 default route only');
      t.equal(conf.plugins[0]!.mtu, mtu, 'conflist: the pod MTU');
      t.equal(readFileSync(path.join(path.dirname(n1.daemon.socket), 'subnet.env'), 'utf8'), `FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=${mtu}\nFLANNEL_IPMASQ=true\n`, 'subnet.env: flannel\'s IPv6 keys only');
      const nft = await execOk(n1.lab.ns, ['nft', 'list', 'table', 'inet', 'podwire-overlay']);
      t.match(nft, /ip6 saddr fd00:10:244::\/56 masquerade fully-random/, 'ip6 masquerade for pod -> outside');
      t.notMatch(nft, /\bip saddr/, 'no IPv4 rules');
      const e6 = await until(() => entries(n1.lab.ns, 6), (e) => e.routes.length === 1);
      const route = e6.value.routes.map(plain)[0];
      t.equal(route, backend === 'vxlan' ? 'fd00:10:244:2::/64 via fd00:10:244:2:: dev pw.1 onlink' : 'fd00:10:244:2::/64 via fd00:198:18::2 dev eth0', 'n1: the v6 route to n2');
      t.same((await entries(n1.lab.ns, 4)).routes, [], 'no IPv4 routes of ours');
      if (backend === 'vxlan') {
        t.match(await execOk(n1.lab.ns, ['ip', '-d', 'link', 'show', 'pw.1']), /vxlan id 1 local fd00:198:18::1 /, 'pw.1 over the IPv6 underlay');
        t.match(e6.value.fdb.join('\n'), /dst fd00:198:18::2 self permanent/, 'FDB: n2\'s v6 node IP');
      } else {
        t.not((await exec(n1.lab.ns, ['ip', 'link', 'show', 'pw.1'])).exitCode, 0, 'host-gw: no VXLAN device');
      }
      const p = await ping6(a, b.ip);
      t.ok(p.ok, `ping -6 n1 -> n2: ${a.ip} -> ${b.ip}`, { output: p.output });
      const p2 = await ping6(b, a.ip);
      t.ok(p2.ok, 'ping -6 n2 -> n1', { output: p2.output });
      const tcp = await tcpSource(lab, b.ns, b.ip, a.ns, 8195);
      t.ok(tcp.ok && tcp.source === a.ip, 'TCP n1 -> n2, source preserved', { output: tcp.output });
      const back = await tcpSource(lab, a.ns, a.ip, b.ns, 8196);
      t.ok(back.ok && back.source === b.ip, 'TCP n2 -> n1, source preserved', { output: back.output });
      const eg = await tcpSource(lab, c.outside, OUTSIDE_IP6, b.ns, 8197);
      t.ok(eg.ok, 'TCP pod on n2 -> outside', { output: eg.output });
      t.equal(eg.source, NODE_IP6[1], 'masqueraded to n2\'s v6 node IP');
      t.equal((await overlayStatus(n2)).waitingFor, undefined, 'n2 up too');
    } finally {
      c?.run.remove();
    }
  });
}
