/**
 * `vxlan.ipv6Device=false` (PODWIRE_VXLAN_IPV6_DEVICE=false) on every node of a dual-stack
 * vxlan cluster whose nodes have IPv6 node IPs: no `pw-v6.1`; the IPv6 pod CIDRs ride inside
 * `pw.1` over the IPv4 underlay (n3 one routed hop away), the pod MTU is pw.1's alone. Real
 * podwireds, pods made by the CNI binary, ping -6 and TCP over IPv6 with the source preserved,
 * and the v6 packets counted on pw.1.
 */
import { readFileSync } from 'node:fs';
import { exec, labTest } from '../harness';
import { buildCluster, entries, linkPackets, overlayStatus, ping, tcpSource, until, type OCluster, type OPod } from './helpers';

const plain = (r: string): string => r.replace(/ pref medium/, '');

labTest('vxlan.ipv6Device=false: IPv6 pods inside pw.1 over the IPv4 underlay although the nodes have IPv6 node IPs', { prefix: 'pwh1-v6pw1', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 150_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'vxlan', dualStack: true, ipv6Underlay: true, env: { PODWIRE_VXLAN_IPV6_DEVICE: 'false' }, podsPerNode: [1, 1, 1] });
    const [n1, n2, n3] = c.nodes as [OCluster['nodes'][0], OCluster['nodes'][0], OCluster['nodes'][0]];
    const [a, b, d] = c.pods as [OPod, OPod, OPod];
    for (const n of [n1, n2, n3]) {
      t.not((await exec(n.lab.ns, ['ip', 'link', 'show', 'pw-v6.1'])).exitCode, 0, `${n.name}: no pw-v6.1`);
      t.same((await overlayStatus(n)).invalidPeers, [], `${n.name}: no peer refused`);
    }
    const e6 = await until(() => entries(n1.lab.ns, 6), (e) => e.routes.length === 2);
    t.same(e6.value.routes.map(plain).sort(), ['fd00:10:244:2::/64 via fd00:10:244:2:: dev pw.1 onlink', 'fd00:10:244:3::/64 via fd00:10:244:3:: dev pw.1 onlink'], 'n1: the v6 pod CIDRs through pw.1');
    t.equal((await overlayStatus(n1)).mtu, 1450, 'pod MTU 1450: pw.1 alone');
    const conf = JSON.parse(readFileSync(n1.daemon.conflistPath, 'utf8')) as { plugins: { mtu?: number }[] };
    t.equal(conf.plugins[0]!.mtu, 1450, 'the CNI conflist says the same (the installer reads the overlay section)');

    const before = await linkPackets(n1.lab.ns, 'pw.1');
    for (const [what, from, to] of [['n1 -> n2', a, b], ['n1 -> n3 (across the router)', a, d], ['n3 -> n2', d, b]] as const) {
      const r = (await until(() => ping(from.ns, to.ip6!, { count: 1, waitS: 1 }), (x) => x.ok, 40)).value;
      t.ok(r.ok, `ping -6 ${what}: ${from.ip6} -> ${to.ip6}`, { output: r.output });
    }
    const tcp = await tcpSource(lab, d.ns, d.ip6!, a.ns, 8294);
    t.ok(tcp.ok && tcp.source === a.ip6, 'TCP over IPv6 n1 -> n3, source preserved', { output: tcp.output });
    const after = await linkPackets(n1.lab.ns, 'pw.1');
    t.ok(after.tx > before.tx && after.rx > before.rx, 'n1: the v6 pod traffic went through pw.1', { before, after });
    const p4 = (await until(() => ping(a.ns, d.ip, { count: 1, waitS: 1 }), (x) => x.ok, 40)).value;
    t.ok(p4.ok, 'and IPv4 n1 -> n3 as before', { output: p4.output });
  } finally {
    c?.run.remove();
  }
});
