/**
 * Interoperability with flannel's vxlan backend: a node built by hand the way flannel builds
 * one (`flannel.1`, VNI 1, port 8472, nolearning, `<podCIDR network>/32` on it, its own MAC,
 * flannel's annotations on its Node) and the entries flannel would program from the Podwire
 * nodes' annotations. Podwire nodes read its annotations (the annotation MAC wins over the
 * derived one) and pods on both sides talk.
 */
import { ip, labTest } from '../harness';
import { buildCluster, entries, ping, tcpSource, until, writeNode, type OCluster } from './helpers';

const FLANNEL_MAC = 'aa:bb:cc:dd:ee:04';

labTest('interop: a hand-built flannel vxlan node and Podwire nodes exchange pod traffic', { prefix: 'pwo-fl', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 120_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'vxlan', podsPerNode: [1, 1, 0] });
    const [n1, n2] = c.nodes as [OCluster['nodes'][0], OCluster['nodes'][0]];
    const [a, b] = c.pods as [OCluster['pods'][0], OCluster['pods'][0]];

    // The flannel node, as flanneld (vxlan backend) sets it up.
    const fl = await lab.addNode(c.ul1, { role: 'fl', address: '198.18.0.4/24' });
    await ip(fl.ns, ['link', 'add', 'flannel.1', 'address', FLANNEL_MAC, 'type', 'vxlan', 'id', '1', 'local', '198.18.0.4', 'dev', 'eth0', 'dstport', '8472', 'nolearning']);
    await ip(fl.ns, ['addr', 'add', '10.244.4.0/32', 'dev', 'flannel.1']);
    await ip(fl.ns, ['link', 'set', 'flannel.1', 'mtu', '1450', 'up']);
    const pod = await lab.addPod('flp1');
    await lab.wirePod(pod, fl, { address: '10.244.4.2', gateway: '10.244.4.1', mtu: 1450 });
    // What flanneld programs for each Podwire node from its annotations (podwired publishes
    // VtepMAC 0a:58:<node IP>; in manifest mode that is also the derived MAC).
    for (const n of [n1, n2]) {
      const octets = n.ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0'));
      const mac = `0a:58:${octets.join(':')}`;
      const vtep = n.podCidr.split('/')[0]!;
      await ip(fl.ns, ['neigh', 'replace', vtep, 'lladdr', mac, 'dev', 'flannel.1', 'nud', 'permanent']);
      await ip(fl.ns, ['route', 'replace', n.podCidr, 'via', vtep, 'dev', 'flannel.1', 'onlink']);
      await lab.execOk(fl.ns, ['bridge', 'fdb', 'replace', mac, 'dev', 'flannel.1', 'dst', n.ip, 'self', 'permanent']);
    }
    // Its Node, with flannel's annotations.
    writeNode(c.run, 'flannel1', '10.244.4.0/24', '198.18.0.4', {
      'flannel.alpha.coreos.com/backend-type': 'vxlan',
      'flannel.alpha.coreos.com/backend-data': `{"VNI":1,"VtepMAC":"${FLANNEL_MAC}"}`,
      'flannel.alpha.coreos.com/public-ip': '198.18.0.4',
      'flannel.alpha.coreos.com/kube-subnet-manager': 'true',
    });

    const e = await until(() => entries(n1.lab.ns), (x) => x.fdb.some((l) => l.startsWith(FLANNEL_MAC)) && x.routes.some((l) => l.startsWith('10.244.4.0/24')));
    t.ok(e.ok, 'n1 programs the flannel node from its annotations', { got: e.value });
    t.ok(e.value.neigh.some((l) => l.startsWith(`10.244.4.0 lladdr ${FLANNEL_MAC} PERMANENT`)), 'neighbour: flannel VTEP IP -> the annotation MAC', { got: e.value.neigh });
    t.ok(e.value.fdb.some((l) => l.startsWith(`${FLANNEL_MAC} dst 198.18.0.4 self permanent`)), 'FDB: annotation MAC -> public-ip');
    t.ok(e.value.routes.includes('10.244.4.0/24 via 10.244.4.0 dev pw.1 onlink'), 'route via the flannel VTEP IP, onlink');

    for (const [what, from, to] of [
      ['podwire n1 pod -> flannel pod', a.ns, '10.244.4.2'],
      ['podwire n2 pod -> flannel pod', b.ns, '10.244.4.2'],
      ['flannel pod -> podwire n1 pod', pod, a.ip],
    ] as const) {
      const r = await until(() => ping(from, to, { count: 1, waitS: 1 }), (x) => x.ok, 20);
      t.ok(r.ok, `ping ${what}`, { output: r.value.output });
    }
    const tcp = await tcpSource(lab, pod, '10.244.4.2', a.ns, 8095);
    t.ok(tcp.ok, 'TCP podwire pod -> flannel pod', { output: tcp.output });
    t.equal(tcp.source, a.ip, 'the flannel side sees the Podwire pod IP');
  } finally {
    c?.run.remove();
  }
});
