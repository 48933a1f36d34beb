/**
 * Node IPs chosen per family (issue #8): dual-stack Node objects that list their IPv6
 * InternalIP first, as a kubelet may. The IPv4 node IP is still the v4 InternalIP (flannel's
 * public-ip), the IPv6 one the v6 InternalIP (public-ipv6), so IPv4 pod traffic keeps flowing:
 * - host-gw: `<v4 podCIDR> via <peer's v4 node IP> dev eth0` beside the v6 route;
 * - vxlan: `pw.1` over the IPv4 underlay (n3 one routed hop away), `pw-v6.1` over the IPv6 one.
 * Real podwireds, pods made by the CNI binary, ping and TCP (nc, the source as the server saw it).
 */
import { readFileSync } from 'node:fs';
import { execOk, labTest } from '../harness';
import { buildCluster, entries, linkPackets, overlayStatus, ping, tcpSource, until, type OCluster, type OPod } from './helpers';

type Peer = { node: string; modes: { ipv4?: string; ipv6?: string } };
const plain = (r: string): string => r.replace(/ pref medium/, '');

async function pingOk(from: OPod, to: string): Promise<{ ok: boolean; output: string }> {
  return (await until(() => ping(from.ns, to, { count: 1, waitS: 1 }), (x) => x.ok, 40)).value;
}

labTest('v6 InternalIP first, host-gw: IPv4 pods routed via the IPv4 node IPs', { prefix: 'pwh1-v6fh', requires: ['veth', 'bridge', 'nftables'], timeout: 150_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'host-gw', dualStack: true, ipv6Underlay: true, v6First: true, nodeCount: 2, podsPerNode: [1, 1] });
    const [n1, n2] = c.nodes as [OCluster['nodes'][0], OCluster['nodes'][0]];
    const [a, b] = c.pods as [OPod, OPod];
    const manifest = readFileSync(`${c.run.manifests}/node-n1.yaml`, 'utf8');
    t.ok(manifest.indexOf('fd00:198:18::1') < manifest.indexOf('198.18.0.1'), 'n1\'s Node lists the IPv6 InternalIP first');
    for (const n of [n1, n2]) t.same((await overlayStatus(n)).invalidPeers, [], `${n.name}: no peer refused`);
    const e4 = await until(() => entries(n1.lab.ns, 4), (e) => e.routes.length === 1);
    t.same(e4.value.routes, ['10.244.2.0/24 via 198.18.0.2 dev eth0'], 'n1: the v4 route via n2\'s IPv4 node IP');
    t.same((await entries(n1.lab.ns, 6)).routes.map(plain), ['fd00:10:244:2::/64 via fd00:198:18::2 dev eth0'], 'and the v6 route via its IPv6 node IP');
    t.same(((await overlayStatus(n2)).peers as Peer[]).map((p) => [p.node, p.modes]), [['n1', { ipv4: 'host-gw', ipv6: 'host-gw' }]], 'n2: n1 via host-gw in both families');
    for (const [what, from, to] of [['n1 -> n2', a, b], ['n2 -> n1', b, a]] as const) {
      const r = await pingOk(from, to.ip);
      t.ok(r.ok, `ping (IPv4) ${what}: ${from.ip} -> ${to.ip}`, { output: r.output });
    }
    const tcp = await tcpSource(lab, b.ns, b.ip, a.ns, 8290);
    t.ok(tcp.ok, 'TCP over IPv4 n1 -> n2', { output: tcp.output });
    t.equal(tcp.source, a.ip, 'v4 source address preserved (no masquerade between pods)');
    const back = await tcpSource(lab, a.ns, a.ip, b.ns, 8291);
    t.ok(back.ok && back.source === b.ip, 'TCP over IPv4 n2 -> n1, source preserved', { output: back.output });
    const p6 = await pingOk(a, b.ip6!);
    t.ok(p6.ok, 'ping -6 n1 -> n2 too', { output: p6.output });
  } finally {
    c?.run.remove();
  }
});

labTest('v6 InternalIP first, vxlan: pw.1 over the IPv4 node IPs, pw-v6.1 over the IPv6 ones, IPv4 pods reach each other across the router', { prefix: 'pwh1-v6fv', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 150_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'vxlan', dualStack: true, ipv6Underlay: true, v6First: true, podsPerNode: [1, 1, 1] });
    const [n1, n2, n3] = c.nodes as [OCluster['nodes'][0], OCluster['nodes'][0], OCluster['nodes'][0]];
    const [a, b, d] = c.pods as [OPod, OPod, OPod];
    for (const n of [n1, n2, n3]) t.same((await overlayStatus(n)).invalidPeers, [], `${n.name}: no peer refused`);
    t.match(await execOk(n1.lab.ns, ['ip', '-d', 'link', 'show', 'pw.1']), /vxlan id 1 local 198\.18\.0\.1 dev eth0 /, 'n1: pw.1 local = the IPv4 node IP');
    t.match(await execOk(n1.lab.ns, ['ip', '-d', 'link', 'show', 'pw-v6.1']), /vxlan id 1 local fd00:198:18::1 dev eth0 /, 'n1: pw-v6.1 local = the IPv6 node IP');
    const e4 = await until(() => entries(n1.lab.ns, 4), (e) => e.fdb.filter((l) => l.includes('permanent')).length === 2 && e.routes.length === 2);
    t.ok(e4.value.fdb.some((l) => / dst 198\.18\.0\.2 self permanent/.test(l)) && e4.value.fdb.some((l) => / dst 198\.19\.0\.3 self permanent/.test(l)), 'n1: pw.1 FDB entries point at the peers\' IPv4 node IPs', { fdb: e4.value.fdb });
    t.same(e4.value.routes.sort(), ['10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink', '10.244.3.0/24 via 10.244.3.0 dev pw.1 onlink'], 'n1: v4 routes through pw.1');
    const e6 = await entries(n1.lab.ns, 6, 'pw-v6.1');
    t.ok(e6.fdb.some((l) => / dst fd00:198:18::2 self permanent/.test(l)) && e6.fdb.some((l) => / dst fd00:198:19::3 self permanent/.test(l)), 'n1: pw-v6.1 FDB entries point at the peers\' IPv6 node IPs', { fdb: e6.fdb });
    const st = await overlayStatus(n1);
    t.equal(st.mtu, 1430, 'pod MTU 1430: the smaller of pw.1 (1450) and pw-v6.1 (1430)');
    const conf = JSON.parse(readFileSync(n1.daemon.conflistPath, 'utf8')) as { plugins: { mtu?: number }[] };
    t.equal(conf.plugins[0]!.mtu, 1430, 'the CNI conflist carries the same MTU (the installer picks the node IP per family too)');

    const before = await linkPackets(n1.lab.ns, 'pw.1');
    for (const [what, from, to] of [['n1 -> n2', a, b], ['n1 -> n3 (across the router)', a, d], ['n3 -> n2', d, b]] as const) {
      const r = await pingOk(from, to.ip);
      t.ok(r.ok, `ping (IPv4) ${what}: ${from.ip} -> ${to.ip}`, { output: r.output });
    }
    const tcp = await tcpSource(lab, d.ns, d.ip, a.ns, 8292);
    t.ok(tcp.ok && tcp.source === a.ip, 'TCP over IPv4 n1 -> n3, source preserved', { output: tcp.output });
    const back = await tcpSource(lab, a.ns, a.ip, b.ns, 8293);
    t.ok(back.ok && back.source === b.ip, 'TCP over IPv4 n2 -> n1, source preserved', { output: back.output });
    const after = await linkPackets(n1.lab.ns, 'pw.1');
    t.ok(after.tx > before.tx && after.rx > before.rx, 'the v4 pod traffic went through pw.1', { before, after });
    const p6 = await pingOk(a, d.ip6!);
    t.ok(p6.ok, 'ping -6 n1 -> n3 over pw-v6.1 too', { output: p6.output });
  } finally {
    c?.run.remove();
  }
});
