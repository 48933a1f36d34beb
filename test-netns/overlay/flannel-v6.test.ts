/**
 * Dual-stack vxlan over two underlays, flannel's layout: `pw.1` over the IPv4 node IPs and
 * `pw-v6.1` over the IPv6 ones (flannel: `flannel.1` and `flannel-v6.1`).
 * - interop: a flannel-style dual-stack node built by hand with `ip` the way flanneld builds it
 *   (both devices, `<v4 net>/32` and `<v6 net>/128`, its MACs, the per-peer neighbour, FDB and
 *   onlink route on each device, flannel's annotations with backend-v6-data and public-ipv6)
 *   and two Podwire nodes exchange v4 and v6 pod traffic; the v6 traffic is seen on the v6
 *   devices' counters and the FDB remotes are the IPv6 node IPs;
 * - Podwire only: three dual-stack nodes (n3 one routed hop away) use pw-v6.1 between each
 *   other; when n3 loses its IPv6 node IP it drops pw-v6.1 and both ends carry its v6 pods in
 *   pw.1; a deleted peer's entries go from both devices; `podwired --cleanup` removes both.
 */
import path from 'node:path';
import { exec, ip, labTest } from '../harness';
import { readConflist } from '../lab/cni-client';
import { PODWIRED_BIN } from '../lab/podwired';
import { buildCluster, entries, linkPackets, NODE_IP6, overlayStatus, ping, removeNode, tcpSource, until, writeNode, type OCluster, type ONode, type OPod } from './helpers';

const FLANNEL_MAC = 'aa:bb:cc:dd:ee:04';
const FLANNEL_MAC6 = 'aa:bb:cc:dd:ee:64';
const FL_IP = '198.18.0.4';
const FL_IP6 = 'fd00:198:18::4';

/** Ping until it answers (bounded): v6 addresses may still be finishing DAD. */
async function pingUntil(from: string, to: string): Promise<{ ok: boolean; output: string }> {
  return (await until(() => ping(from, to, { count: 1, waitS: 1 }), (x) => x.ok, 40)).value;
}

/** Packets on a device, summed (tx + rx). */
async function packets(ns: string, dev: string): Promise<number> {
  const p = await linkPackets(ns, dev);
  return p.tx + p.rx;
}

labTest('flannel interop, dual-stack vxlan: flannel.1 + flannel-v6.1 built by hand and Podwire pw.1 + pw-v6.1 exchange v4 and v6 pod traffic', { prefix: 'hfv-fl', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 150_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'vxlan', dualStack: true, ipv6Underlay: true, podsPerNode: [1, 1], nodeCount: 2 });
    const [n1, n2] = c.nodes as [ONode, ONode];
    const [a, b] = c.pods as [OPod, OPod];
    t.ok(a.ip6 && b.ip6, `Podwire pods are dual-stack: ${a.ip} ${a.ip6}, ${b.ip} ${b.ip6}`);

    // The flannel node, as flanneld's vxlan backend with EnableIPv6 sets it up (pkg/backend/vxlan:
    // flannel.<VNI> local <public-ip>, flannel-v6.<VNI> local <public-ipv6>, both on the external
    // interface, nolearning, created with MTU = interface MTU - 50 for both, <net>/32 and <net6>/128).
    // The kernel clamps the IPv6 device's MTU at creation to interface MTU - 70.
    const fl = await lab.addNode(c.ul1, { role: 'fl', address: `${FL_IP}/24` });
    await ip(fl.ns, ['addr', 'add', `${FL_IP6}/64`, 'dev', 'eth0', 'nodad']);
    await ip(fl.ns, ['link', 'add', 'flannel.1', 'mtu', '1450', 'address', FLANNEL_MAC, 'type', 'vxlan', 'id', '1', 'local', FL_IP, 'dev', 'eth0', 'dstport', '8472', 'nolearning']);
    await ip(fl.ns, ['addr', 'add', '10.244.4.0/32', 'dev', 'flannel.1']);
    await ip(fl.ns, ['link', 'set', 'flannel.1', 'up']);
    await ip(fl.ns, ['link', 'add', 'flannel-v6.1', 'mtu', '1450', 'address', FLANNEL_MAC6, 'type', 'vxlan', 'id', '1', 'local', FL_IP6, 'dev', 'eth0', 'dstport', '8472', 'nolearning']);
    await ip(fl.ns, ['-6', 'addr', 'add', 'fd00:10:244:4::/128', 'dev', 'flannel-v6.1', 'nodad']);
    await ip(fl.ns, ['link', 'set', 'flannel-v6.1', 'up']);
    t.match(await ip(fl.ns, ['link', 'show', 'flannel-v6.1']), /mtu 1430 /, 'the kernel clamped flannel-v6.1 to 1500 - 70');
    await lab.execOk(fl.ns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    // Its pod: v4 and v6 on one veth (the harness wires v4; the v6 address and routes by hand).
    const pod = await lab.addPod('flp1');
    const wired = await lab.wirePod(pod, fl, { address: '10.244.4.2', gateway: '10.244.4.1', mtu: 1400 });
    await ip(pod, ['-6', 'addr', 'add', 'fd00:10:244:4::2/128', 'dev', wired.podIfName, 'nodad']);
    await ip(fl.ns, ['-6', 'addr', 'add', 'fd00:10:244:4::1/128', 'dev', wired.hostIfName, 'nodad']);
    await ip(fl.ns, ['-6', 'route', 'add', 'fd00:10:244:4::2/128', 'dev', wired.hostIfName]);
    await ip(pod, ['-6', 'route', 'add', 'fd00:10:244:4::1', 'dev', wired.podIfName]);
    await ip(pod, ['-6', 'route', 'add', 'default', 'via', 'fd00:10:244:4::1', 'dev', wired.podIfName]);

    // What flanneld programs for each Podwire node from its annotations: backend-data's VtepMAC on
    // flannel.1 (-> public-ip), backend-v6-data's VtepMAC on flannel-v6.1 (-> public-ipv6). The MACs
    // are what podwired publishes (its status shows them; in manifest mode nothing is written back).
    for (const [i, n] of [n1, n2].entries()) {
      const st = await overlayStatus(n);
      const mac = String(st.vtepMac);
      const mac6 = String(st.vtepMac6);
      t.equal(st.device6, 'pw-v6.1', `${n.name} runs the IPv6 device (VTEP MAC ${mac6})`);
      const vtep = n.podCidr.split('/')[0]!;
      const vtep6 = `fd00:10:244:${i + 1}::`;
      await ip(fl.ns, ['neigh', 'replace', vtep, 'lladdr', mac, 'dev', 'flannel.1', 'nud', 'permanent']);
      await lab.execOk(fl.ns, ['bridge', 'fdb', 'replace', mac, 'dev', 'flannel.1', 'dst', n.ip, 'self', 'permanent']);
      await ip(fl.ns, ['route', 'replace', n.podCidr, 'via', vtep, 'dev', 'flannel.1', 'onlink']);
      await ip(fl.ns, ['-6', 'neigh', 'replace', vtep6, 'lladdr', mac6, 'dev', 'flannel-v6.1', 'nud', 'permanent']);
      await lab.execOk(fl.ns, ['bridge', 'fdb', 'replace', mac6, 'dev', 'flannel-v6.1', 'dst', NODE_IP6[i]!, 'self', 'permanent']);
      await ip(fl.ns, ['-6', 'route', 'replace', `fd00:10:244:${i + 1}::/64`, 'via', vtep6, 'dev', 'flannel-v6.1', 'onlink']);
    }
    // Its Node, with flannel's annotations (a dual-stack flanneld: backend-v6-data and public-ipv6).
    writeNode(c.run, 'flannel1', ['10.244.4.0/24', 'fd00:10:244:4::/64'], FL_IP, {
      'flannel.alpha.coreos.com/backend-type': 'vxlan',
      'flannel.alpha.coreos.com/backend-data': `{"VNI":1,"VtepMAC":"${FLANNEL_MAC}"}`,
      'flannel.alpha.coreos.com/backend-v6-data': `{"VNI":1,"VtepMAC":"${FLANNEL_MAC6}"}`,
      'flannel.alpha.coreos.com/public-ip': FL_IP,
      'flannel.alpha.coreos.com/public-ipv6': FL_IP6,
      'flannel.alpha.coreos.com/kube-subnet-manager': 'true',
    });

    const link6 = (await lab.execOk(n1.lab.ns, ['ip', '-d', 'link', 'show', 'pw-v6.1'])).replace(/\s+/g, ' ');
    t.match(link6, /mtu 1430 /, 'pw-v6.1 MTU = IPv6 underlay - 70', { link6 });
    t.match(link6, /vxlan id 1 local fd00:198:18::1 dev eth0 .*dstport 8472 .*nolearning/, 'pw-v6.1: VNI 1, local = the IPv6 node IP, port 8472, nolearning');
    const e6 = await until(() => entries(n1.lab.ns, 6, 'pw-v6.1'), (x) => x.fdb.some((l) => l.startsWith(FLANNEL_MAC6)) && x.routes.some((l) => l.startsWith('fd00:10:244:4::/64')));
    t.ok(e6.ok, 'n1 programs the flannel node\'s v6 pod CIDR from backend-v6-data', { got: e6.value });
    t.ok(e6.value.fdb.some((l) => l.startsWith(`${FLANNEL_MAC6} dst ${FL_IP6} self permanent`)), 'FDB on pw-v6.1: backend-v6-data MAC -> public-ipv6', { fdb: e6.value.fdb });
    t.ok(e6.value.neigh.some((l) => l.startsWith(`fd00:10:244:4:: lladdr ${FLANNEL_MAC6} PERMANENT`)), 'v6 neighbour on pw-v6.1: flannel\'s v6 VTEP IP -> its v6 MAC', { neigh: e6.value.neigh });
    t.ok(e6.value.routes.some((r) => r.startsWith('fd00:10:244:4::/64 via fd00:10:244:4:: dev pw-v6.1 onlink')), 'v6 route via flannel\'s v6 VTEP IP on pw-v6.1', { routes: e6.value.routes });
    const e4 = await entries(n1.lab.ns, 4);
    t.ok(e4.fdb.some((l) => l.startsWith(`${FLANNEL_MAC} dst ${FL_IP} self permanent`)) && e4.routes.includes('10.244.4.0/24 via 10.244.4.0 dev pw.1 onlink'), 'v4 on pw.1 as before', { e4 });
    t.notOk(e4.fdb.some((l) => l.startsWith(FLANNEL_MAC6)), 'the v6 MAC is not on pw.1');
    t.equal((await overlayStatus(n1)).mtu, 1430, 'pod MTU: the smaller of pw.1 (1450) and pw-v6.1 (1430)');
    t.equal(readConflist(n1.daemon.conflistPath).plugins[0]?.mtu, 1430, 'and the CNI conflist carries it');

    // IPv6 pod traffic: over flannel-v6.1 on the flannel side, pw-v6.1 on ours, never pw.1.
    const before = { fl6: await packets(fl.ns, 'flannel-v6.1'), fl4: await packets(fl.ns, 'flannel.1'), pw6: await packets(n1.lab.ns, 'pw-v6.1') };
    for (const [what, from, to] of [
      ['podwire n1 pod -> flannel pod', a.ns, 'fd00:10:244:4::2'],
      ['podwire n2 pod -> flannel pod', b.ns, 'fd00:10:244:4::2'],
      ['flannel pod -> podwire n1 pod', pod, a.ip6!],
    ] as const) {
      const r = await pingUntil(from, to);
      t.ok(r.ok, `ping -6 ${what}`, { output: r.output });
    }
    const tcp6 = await tcpSource(lab, pod, 'fd00:10:244:4::2', a.ns, 8196);
    t.ok(tcp6.ok, 'TCP over IPv6 podwire pod -> flannel pod', { output: tcp6.output });
    t.equal(tcp6.source, a.ip6, 'the flannel side sees the Podwire pod\'s v6 address');
    const back6 = await tcpSource(lab, b.ns, b.ip6!, pod, 8197);
    t.ok(back6.ok && back6.source === 'fd00:10:244:4::2', 'TCP over IPv6 flannel pod -> podwire n2 pod, source preserved', { output: back6.output });
    const after = { fl6: await packets(fl.ns, 'flannel-v6.1'), fl4: await packets(fl.ns, 'flannel.1'), pw6: await packets(n1.lab.ns, 'pw-v6.1') };
    t.ok(after.fl6 - before.fl6 >= 6, 'the v6 traffic crossed flannel-v6.1', { before, after });
    t.equal(after.fl4, before.fl4, 'and not flannel.1', { before, after });
    t.ok(after.pw6 - before.pw6 >= 4, 'and n1\'s pw-v6.1', { before, after });

    // IPv4 pod traffic: over flannel.1 / pw.1.
    const b4 = await packets(fl.ns, 'flannel.1');
    for (const [what, from, to] of [
      ['podwire n1 pod -> flannel pod', a.ns, '10.244.4.2'],
      ['flannel pod -> podwire n2 pod', pod, b.ip],
    ] as const) {
      const r = await pingUntil(from, to);
      t.ok(r.ok, `ping ${what}`, { output: r.output });
    }
    const tcp4 = await tcpSource(lab, pod, '10.244.4.2', a.ns, 8198);
    t.ok(tcp4.ok && tcp4.source === a.ip, 'TCP over IPv4 podwire pod -> flannel pod, source preserved', { output: tcp4.output });
    t.ok((await packets(fl.ns, 'flannel.1')) - b4 >= 4, 'the v4 traffic crossed flannel.1');
  } finally {
    c?.run.remove();
  }
});

labTest('Podwire dual-stack vxlan with IPv6 node IPs: pw-v6.1 between Podwire nodes, a peer without an IPv6 node IP inside pw.1, a deleted peer\'s entries removed, --cleanup removes both devices', { prefix: 'hfv-pp', requires: ['veth', 'bridge', 'vxlan', 'nftables'], timeout: 150_000 }, async (t, lab) => {
  let c: OCluster | undefined;
  try {
    c = await buildCluster(lab, { backend: 'vxlan', dualStack: true, ipv6Underlay: true, podsPerNode: [1, 1, 1] });
    const [n1, n2] = c.nodes as [ONode, ONode];
    const [a, b, d] = c.pods as [OPod, OPod, OPod];
    const e6 = await until(() => entries(n1.lab.ns, 6, 'pw-v6.1'), (x) => x.fdb.length === 2 && x.routes.length === 2);
    t.same(e6.value.routes.map((r) => r.replace(/ pref medium/, '')), ['fd00:10:244:2::/64 via fd00:10:244:2:: dev pw-v6.1 onlink', 'fd00:10:244:3::/64 via fd00:10:244:3:: dev pw-v6.1 onlink'], 'n1: both peers\' v6 pod CIDRs over pw-v6.1');
    t.same(e6.value.fdb.map((l) => l.split(' ').slice(1, 3).join(' ')).sort(), [`dst ${NODE_IP6[1]}`, `dst ${NODE_IP6[2]}`], 'n1: pw-v6.1 FDB remotes are the peers\' IPv6 node IPs', { fdb: e6.value.fdb });
    const e4 = await entries(n1.lab.ns, 4);
    t.equal(e4.fdb.length, 2, 'n1: pw.1 keeps one FDB entry per peer, for IPv4');
    t.notOk(e4.fdb.some((l) => l.includes(':198:')), 'no IPv6 remote on pw.1');
    t.equal((await entries(n1.lab.ns, 6, 'pw.1')).neigh.filter((l) => !l.startsWith('fe80')).length, 0, 'no v6 neighbour on pw.1');

    const before = { pw6: await packets(n1.lab.ns, 'pw-v6.1'), pw1: await packets(n1.lab.ns, 'pw.1') };
    for (const [what, from, to] of [
      ['n1 -> n2', a, b.ip6!],
      ['n1 -> n3 (routed v6 underlay)', a, d.ip6!],
      ['n3 -> n2', d, b.ip6!],
    ] as const) {
      const r = await pingUntil(from.ns, to);
      t.ok(r.ok, `ping -6 ${what}: ${from.ip6} -> ${to}`, { output: r.output });
    }
    const tcp = await tcpSource(lab, d.ns, d.ip6!, a.ns, 8199);
    t.ok(tcp.ok && tcp.source === a.ip6, 'TCP over IPv6 n1 -> n3, source preserved', { output: tcp.output });
    const after = { pw6: await packets(n1.lab.ns, 'pw-v6.1'), pw1: await packets(n1.lab.ns, 'pw.1') };
    t.ok(after.pw6 - before.pw6 >= 4, 'the v6 pod traffic went over n1\'s pw-v6.1', { before, after });
    t.equal(after.pw1, before.pw1, 'and not over pw.1', { before, after });
    const v4 = await pingUntil(a.ns, d.ip);
    t.ok(v4.ok, 'IPv4 n1 -> n3 alongside, over pw.1', { output: v4.output });

    // n3 loses its IPv6 node IP (its Node lists only the IPv4 InternalIP): n3 drops pw-v6.1, and
    // both ends carry n3's v6 pods inside pw.1 again, while n1 <-> n2 stay on pw-v6.1.
    writeNode(c.run, 'n3', ['10.244.3.0/24', 'fd00:10:244:3::/64'], '198.19.0.3');
    const moved = await until(async () => ({ r: (await entries(n1.lab.ns, 6)).routes, n3dev: (await exec(d.node.lab.ns, ['ip', 'link', 'show', 'pw-v6.1'])).exitCode }), (x) => x.r.some((l) => l.startsWith('fd00:10:244:3::/64 via fd00:10:244:3:: dev pw.1 onlink')) && x.n3dev !== 0);
    t.ok(moved.ok, 'n1 routes n3\'s v6 pods through pw.1, n3 has no pw-v6.1 any more', { got: moved.value, n1log: moved.ok ? '' : n1.daemon.tail() });
    t.ok(moved.value.r.some((l) => l.startsWith('fd00:10:244:2::/64 via fd00:10:244:2:: dev pw-v6.1 onlink')), 'n2 stays on pw-v6.1', { routes: moved.value.r });
    const m6 = await entries(n1.lab.ns, 6, 'pw-v6.1');
    t.notOk(m6.neigh.some((l) => l.startsWith('fd00:10:244:3::')) || m6.fdb.some((l) => l.includes(NODE_IP6[2]!)), 'n3\'s v6 neighbour and FDB entry left pw-v6.1', { m6 });
    t.ok((await entries(n1.lab.ns, 6, 'pw.1')).neigh.some((l) => l.startsWith('fd00:10:244:3:: lladdr 0a:58:c6:13:00:03 PERMANENT')), 'its v6 neighbour is on pw.1 with its v4 VTEP MAC');
    for (const [what, from, to] of [
      ['n1 -> n3 (inside pw.1)', a, d.ip6!],
      ['n3 -> n2 (inside pw.1)', d, b.ip6!],
      ['n1 -> n2 (pw-v6.1)', a, b.ip6!],
    ] as const) {
      const r = await pingUntil(from.ns, to);
      t.ok(r.ok, `ping -6 ${what}`, { output: r.output });
    }

    // n3 leaves the cluster: its entries go from both of n1's devices.
    removeNode(c.run, 'n3');
    const gone = await until(async () => ({ e6: await entries(n1.lab.ns, 6, 'pw-v6.1'), e4: await entries(n1.lab.ns, 4), p6: await entries(n1.lab.ns, 6, 'pw.1') }), (x) => x.e6.fdb.length === 1 && x.e6.routes.length === 1 && x.e4.fdb.length === 1);
    t.ok(gone.ok, 'n1: n3\'s entries removed', { got: gone.value });
    t.notOk(gone.value.p6.neigh.some((l) => l.startsWith('fd00:10:244:3::')), 'no v6 neighbour of n3 left on pw.1', { got: gone.value.p6 });
    t.notOk(gone.value.e4.routes.some((l) => l.startsWith('10.244.3.')) || gone.value.e4.neigh.some((l) => l.startsWith('10.244.3.')), 'nor its v4 entries on pw.1');
    t.same(gone.value.e6.neigh.filter((l) => !l.startsWith('fe80')).map((l) => l.split(' ')[0]), ['fd00:10:244:2::'], 'pw-v6.1 holds n2\'s neighbour only');

    // podwired --cleanup (same flags as the running daemon, which is stopped first) removes both devices.
    const dn = n2.daemon;
    t.same(await dn.stop(10_000), { exitCode: 0, signal: null }, 'n2 podwired stopped');
    const cl = await exec(n2.lab.ns, [process.execPath, PODWIRED_BIN, '--config', path.join(dn.dir, 'config.yaml'), '--node-name', n2.name, '--manifests', c.run.manifests, '--cni-conf-dir', dn.confDir, '--cni-bin-dir', dn.binDir, '--state-dir', dn.stateDir, '--control-socket', dn.socket, ...n2.extraArgs, '--cleanup']);
    t.equal(cl.exitCode, 0, '--cleanup exit 0', { stderr: cl.exitCode === 0 ? '' : cl.stderr.slice(-600) });
    t.not((await exec(n2.lab.ns, ['ip', 'link', 'show', 'pw-v6.1'])).exitCode, 0, 'pw-v6.1 removed by --cleanup');
    t.not((await exec(n2.lab.ns, ['ip', 'link', 'show', 'pw.1'])).exitCode, 0, 'pw.1 removed by --cleanup');
  } finally {
    c?.run.remove();
  }
});
