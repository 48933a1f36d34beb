/**
 * vxlan across 3 real podwireds (n3 one routed hop away): pod <-> pod same node and across
 * nodes (ping, TCP with the source IP preserved), egress masqueraded to the node IP, a node
 * removed / recreated with a new IP / podCIDR changed is cleaned up everywhere, a stale entry
 * of ours is removed and a foreign one kept, and kill -9 + restart of the daemons while a ping
 * runs loses no ping.
 */
import { exec, ip, labTest } from '../harness';
import { buildCluster, entries, OUTSIDE_IP, overlayStatus, ping, podwireStatusText, removeNode, startDaemon, tcpSource, until, writeNode, type OCluster } from './helpers';

labTest('vxlan: 3 podwireds, pods on every node', { prefix: 'pwo-vx', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 170_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'vxlan' });
    const [n1, n2] = c.nodes as [OCluster['nodes'][0], OCluster['nodes'][0]];
    const [a1, a2, b, d] = c.pods as [OCluster['pods'][0], OCluster['pods'][0], OCluster['pods'][0], OCluster['pods'][0]];

    // What each node programmed.
    const e1 = await until(() => entries(n1.lab.ns), (e) => e.routes.length === 2);
    t.same(e1.value.routes.sort(), ['10.244.2.0/24 via 10.244.2.0 dev pw.1 onlink', '10.244.3.0/24 via 10.244.3.0 dev pw.1 onlink'], 'n1: one onlink route per peer, our proto');
    t.ok(e1.value.neigh.some((l) => /^10\.244\.3\.0 lladdr 0a:58:c6:13:00:03 PERMANENT/.test(l)), 'n1: permanent neighbour VTEP IP -> derived VTEP MAC', { got: e1.value.neigh });
    t.ok(e1.value.fdb.some((l) => /^0a:58:c6:13:00:03 dst 198\.19\.0\.3 self permanent/.test(l)), 'n1: FDB VTEP MAC -> node IP', { got: e1.value.fdb });

    const csum = (await overlayStatus(n1)).txChecksumOffload as { enabled?: boolean; action?: string; reason?: string } | undefined;
    t.equal(csum?.enabled, true, 'status: TX checksum offload on pw.1 is on (modern kernel: left alone)', { got: csum });
    t.equal(csum?.action, 'leave', 'the auto decision leaves it', { got: csum });

    // Connectivity.
    const pings: [string, typeof a1, string][] = [
      ['same node', a1, a2.ip],
      ['n1 -> n2', a1, b.ip],
      ['n1 -> n3 (routed underlay)', a2, d.ip],
      ['n2 -> n3', b, d.ip],
      ['n3 -> n1', d, a1.ip],
    ];
    for (const [what, from, to] of pings) {
      const r = await ping(from.ns, to, { count: 2 });
      t.ok(r.ok, `ping ${what}: ${from.ip} -> ${to}`, { output: r.output });
    }
    const tcp = await tcpSource(lab, d.ns, d.ip, a1.ns, 8080);
    t.ok(tcp.ok, 'TCP n1 -> n3', { output: tcp.output });
    t.equal(tcp.source, a1.ip, 'the server sees the client pod IP (no NAT between pods)');
    const tcp2 = await tcpSource(lab, a2.ns, a2.ip, b.ns, 8081);
    t.ok(tcp2.ok, 'TCP n2 -> n1', { output: tcp2.output });
    t.equal(tcp2.source, b.ip, 'source preserved n2 -> n1');

    // Egress to the outside (which has no route to the pod network).
    const eg = await tcpSource(lab, c.outside, OUTSIDE_IP, a1.ns, 8082);
    t.ok(eg.ok, 'TCP pod -> outside', { output: eg.output });
    t.equal(eg.source, n1.ip, 'egress is masqueraded to the node IP');
    const egp = await ping(d.ns, OUTSIDE_IP, { count: 1 });
    t.ok(egp.ok, 'ping pod on n3 -> outside', { output: egp.output });

    const st = await overlayStatus(n1);
    t.same((st.peers as { node: string; encapsulated: boolean }[]).map((p) => [p.node, p.encapsulated]), [['n2', true], ['n3', true]], 'status: peers encapsulated');
    t.match(await podwireStatusText(n1), /n3\s+10\.244\.3\.0\/24\s+via 198\.19\.0\.3 \(vxlan/, 'podwire status lists the peers');

    // Stale entries planted by hand on n2: ours (proto 77, on pw.1) go, a foreign route stays.
    await ip(n2.lab.ns, ['route', 'add', '10.244.99.0/24', 'via', '10.244.99.0', 'dev', 'pw.1', 'onlink', 'proto', '77']);
    await ip(n2.lab.ns, ['neigh', 'add', '10.244.99.0', 'lladdr', '02:00:00:00:00:99', 'dev', 'pw.1', 'nud', 'permanent']);
    await exec(n2.lab.ns, ['bridge', 'fdb', 'add', '02:00:00:00:00:99', 'dev', 'pw.1', 'dst', '198.18.0.99', 'self', 'permanent']);
    await ip(n2.lab.ns, ['route', 'add', '10.244.98.0/24', 'via', OUTSIDE_IP, 'dev', 'eth0', 'proto', 'static']);
    const stale = await until(() => entries(n2.lab.ns), (e) => !JSON.stringify(e).includes('99'));
    t.ok(stale.ok, 'n2: the planted route, neighbour and FDB entry of ours are removed by the periodic reconcile', { got: stale.value });
    t.match(await ip(n2.lab.ns, ['route', 'show', '10.244.98.0/24']), /via 198\.18\.0\.200 dev eth0 proto static/, 'n2: the foreign route is kept');
    t.equal(stale.value.routes.length, 2, 'n2: its own two peer routes are still there');

    // Remove n3: its entries vanish on n1 and n2.
    const gone = (e: { routes: string[]; neigh: string[]; fdb: string[] }) => !JSON.stringify(e).includes('10.244.3.0') && !JSON.stringify(e).includes('198.19.0.3');
    removeNode(c.run, 'n3');
    for (const n of [n1, n2]) {
      const r = await until(() => entries(n.lab.ns), gone);
      t.ok(r.ok, `node removed: no route, neighbour or FDB entry for n3 left on ${n.name}`, { got: r.value });
    }
    // Recreate it with the same name and a new IP: only the new entries exist.
    writeNode(c.run, 'n3', '10.244.3.0/24', '198.19.0.33', {}, 'pwo-uid-n3-new');
    const re = await until(() => entries(n1.lab.ns), (e) => e.fdb.some((l) => l.includes('dst 198.19.0.33')) && e.routes.length === 2);
    t.ok(re.ok, 'recreated with a new IP: n1 has the new FDB entry', { got: re.value });
    t.notOk(re.value.fdb.some((l) => /dst 198\.19\.0\.3 /.test(l)), 'and none for the old IP');
    t.equal(re.value.routes.length, 2, 'n1: still exactly one route per peer');
    // Change its podCIDR: the old route and neighbour go.
    writeNode(c.run, 'n3', '10.244.30.0/24', '198.19.0.3');
    const cc = await until(() => entries(n1.lab.ns), (e) => e.routes.some((l) => l.startsWith('10.244.30.0/24')) && !JSON.stringify(e).includes('10.244.3.0'));
    t.ok(cc.ok, 'podCIDR changed: n1 routes 10.244.30.0/24 and has nothing left for 10.244.3.0/24', { got: cc.value });
    writeNode(c.run, 'n3', '10.244.3.0/24', '198.19.0.3');
    const back = await until(() => entries(n1.lab.ns), (e) => e.routes.some((l) => l.startsWith('10.244.3.0/24')) && e.routes.length === 2);
    t.ok(back.ok, 'n3 restored', { got: back.value });
    const pingBack = await until(() => ping(a1.ns, d.ip, { count: 1, waitS: 1 }), (r) => r.ok, 30);
    t.ok(pingBack.ok, 'n1 -> n3 works again after the restore', { output: pingBack.value.output });

    // kill -9 both daemons of a path and restart them while a ping runs across it: nothing is lost.
    const COUNT = 100;
    let pingDone = false;
    const running = ping(a1.ns, b.ip, { count: COUNT, intervalS: 0.1, waitS: 2 }).finally(() => (pingDone = true));
    await new Promise((r) => setTimeout(r, 500));
    for (const n of [n1, n2]) n.daemon.proc.killNow();
    await Promise.all([n1.daemon.proc.exited, n2.daemon.proc.exited]);
    for (const n of [n1, n2]) startDaemon(c, n);
    for (const n of [n1, n2]) {
      const r = await n.daemon.waitReady();
      t.ok(r.ready, `${n.name} restarted after kill -9`, { last: r.last });
    }
    t.comment(`the ping was ${pingDone ? 'already done' : 'still running'} when both restarted daemons were ready`);
    const pr = await running;
    t.match(pr.output, new RegExp(`${COUNT} packets transmitted, ${COUNT} received, 0% packet loss`), `0 of ${COUNT} pings lost across kill -9 + restart`, { output: pr.output });
    const after = await entries(n1.lab.ns);
    t.equal(after.routes.length, 2, 'after the restart: 2 routes on n1 (none lost, none duplicated)');
    t.equal(after.neigh.filter((l) => l.includes('PERMANENT')).length, 2, '2 permanent neighbours');
    t.equal(after.fdb.length, 2, '2 FDB entries');
  } finally {
    c?.run.remove();
  }
});
