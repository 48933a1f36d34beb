// Routes, neighbours, FDB and the batched apply* against the real kernel, checked with iproute2.
import { labTest, execOk } from '../harness';
import { Cidr, IpAddress } from '../../src/common/ip';
import { openKernel, netnsRef, type Change, type Route } from '../../src/kernel';
import { ipJson, bridgeJson } from './helpers';

const PROTO = 99; // a private rtm_protocol, so our routes are easy to count

interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  flags: string[];
  metric?: number;
  type?: string;
  protocol?: string;
  scope?: string;
}

async function setupNode(lab: Parameters<Parameters<typeof labTest>[2]>[1]) {
  const ns = await lab.addNetns('node');
  const k = await openKernel(netnsRef(ns));
  await k.net.createLink({ kind: 'veth', name: 'eth0', peerName: 'ul0', up: true });
  await k.net.setLinkUp('ul0', true);
  await k.net.addAddress('eth0', Cidr.parse('198.18.0.1/24'));
  await k.net.createLink({ kind: 'vxlan', name: 'pw.vxlan', vni: 1, port: 8472, learning: false, local: IpAddress.parse('198.18.0.1'), underlayDevice: 'eth0', up: true });
  return { ns, k };
}

labTest('routes: onlink, replace, metric, scope, blackhole, table, delete, list filters', { prefix: 'pwk-rt', requires: ['vxlan', 'veth'] }, async (t, lab) => {
  const { ns, k } = await setupNode(lab);
  t.teardown(() => k.close());
  const dst = Cidr.parse('10.244.5.0/24');
  await k.net.addRoute({ dst, gateway: IpAddress.parse('10.244.5.0'), dev: 'pw.vxlan', onlink: true, protocol: PROTO });
  let routes = await ipJson<IpRoute[]>(ns, ['route', 'show', '10.244.5.0/24']);
  t.equal(routes.length, 1);
  t.equal(routes[0]!.gateway, '10.244.5.0');
  t.equal(routes[0]!.dev, 'pw.vxlan');
  t.ok(routes[0]!.flags.includes('onlink'), 'onlink flag (ip -j route)');
  await t.rejects(k.net.addRoute({ dst, gateway: IpAddress.parse('10.244.5.0'), dev: 'pw.vxlan', onlink: true, protocol: PROTO }), { name: 'KernelError', errno: 17 }, 'add of an existing route is EEXIST');
  await t.rejects(k.net.addRoute({ dst: Cidr.parse('10.244.6.0/24'), gateway: IpAddress.parse('10.9.9.9'), protocol: PROTO }), { name: 'KernelError', errno: 101, message: /ENETUNREACH/ }, 'gateway not on a link: ENETUNREACH with text');

  await k.net.replaceRoute({ dst, gateway: IpAddress.parse('198.18.0.2'), dev: 'eth0', protocol: PROTO });
  routes = await ipJson<IpRoute[]>(ns, ['route', 'show', '10.244.5.0/24']);
  t.equal(routes.length, 1, 'replace keeps one route');
  t.equal(routes[0]!.gateway, '198.18.0.2');
  t.equal(routes[0]!.dev, 'eth0');
  t.notOk(routes[0]!.flags.includes('onlink'));

  await k.net.addRoute({ dst: Cidr.parse('10.96.0.0/12'), type: 'blackhole', protocol: PROTO, metric: 50 });
  await k.net.addRoute({ dst: Cidr.parse('10.245.0.0/16'), dev: 'eth0', scope: 'link', protocol: PROTO, table: 1000 });
  const bh = (await ipJson<IpRoute[]>(ns, ['route', 'show', '10.96.0.0/12']))[0]!;
  t.equal(bh.type, 'blackhole');
  t.equal(bh.metric, 50);
  const t1000 = await ipJson<IpRoute[]>(ns, ['route', 'show', 'table', '1000']);
  t.same(t1000.map((r) => [r.dst, r.dev, r.scope]), [['10.245.0.0/16', 'eth0', 'link']], 'table 1000 via RTA_TABLE');

  const ours = await k.net.listRoutes({ family: 4, protocol: PROTO });
  t.same(ours.map((r) => r.dst.toString()).sort(), ['10.244.5.0/24', '10.96.0.0/12'], 'main table, protocol filter');
  const all = await k.net.listRoutes({ family: 4, protocol: PROTO, table: 0 });
  t.equal(all.length, 3, 'table 0 = all tables');
  const listed = ours.find((r) => r.dst.toString() === '10.244.5.0/24')!;
  t.equal(listed.gateway?.toString(), '198.18.0.2');
  t.equal(listed.dev, 'eth0');
  t.equal((await k.net.listRoutes({ family: 6, protocol: PROTO })).length, 0, 'family filter');

  await k.net.deleteRoute({ dst, protocol: PROTO });
  await k.net.deleteRoute({ dst, protocol: PROTO }); // idempotent
  await k.net.deleteRoute({ dst: Cidr.parse('10.96.0.0/12'), type: 'blackhole', metric: 50 });
  await k.net.deleteRoute({ dst: Cidr.parse('10.245.0.0/16'), table: 1000 });
  t.equal((await k.net.listRoutes({ protocol: PROTO, table: 0 })).length, 0, 'all deleted');
  t.equal((await execOk(null, ['ip', '-n', ns, 'route', 'show', 'proto', String(PROTO), 'table', 'all'])).trim(), '', 'iproute2 agrees');
});

labTest('neighbours and FDB: replace, append to the all-zero MAC, delete', { prefix: 'pwk-rt', requires: ['vxlan', 'veth'] }, async (t, lab) => {
  const { ns, k } = await setupNode(lab);
  t.teardown(() => k.close());
  const vtep = IpAddress.parse('10.244.5.0');
  await k.net.replaceNeighbor({ dev: 'pw.vxlan', ip: vtep, mac: '02:00:00:00:00:05', permanent: true });
  await k.net.replaceNeighbor({ dev: 'pw.vxlan', ip: vtep, mac: '02:00:00:00:00:06', permanent: true });
  const neigh = await ipJson<{ dst: string; dev: string; lladdr: string; state: string[] }[]>(ns, ['neigh', 'show', 'dev', 'pw.vxlan']);
  t.same(neigh.map((n) => [n.dst, n.lladdr, n.state]), [['10.244.5.0', '02:00:00:00:00:06', ['PERMANENT']]], 'replace updated the one entry');
  const listed = await k.net.listNeighbors('pw.vxlan');
  t.same(listed.map((n) => [n.ip.toString(), n.mac, n.permanent, n.dev]), [['10.244.5.0', '02:00:00:00:00:06', true, 'pw.vxlan']]);

  const zero = '00:00:00:00:00:00';
  await k.net.appendFdb({ dev: 'pw.vxlan', mac: zero, dst: IpAddress.parse('198.18.0.2'), permanent: true });
  await k.net.appendFdb({ dev: 'pw.vxlan', mac: zero, dst: IpAddress.parse('198.18.0.3'), permanent: true });
  await k.net.replaceFdb({ dev: 'pw.vxlan', mac: '02:00:00:00:00:06', dst: IpAddress.parse('198.18.0.2'), permanent: true });
  await k.net.replaceFdb({ dev: 'pw.vxlan', mac: '02:00:00:00:00:06', dst: IpAddress.parse('198.18.0.4'), permanent: true });
  const fdb = await bridgeJson<{ mac: string; dst?: string; flags: string[]; state: string }[]>(ns, ['fdb', 'show', 'dev', 'pw.vxlan']);
  const rows = fdb.map((f) => `${f.mac} ${f.dst} ${f.state} ${f.flags.join(',')}`).sort();
  t.same(rows, [
    '00:00:00:00:00:00 198.18.0.2 permanent self',
    '00:00:00:00:00:00 198.18.0.3 permanent self',
    '02:00:00:00:00:06 198.18.0.4 permanent self',
  ], 'two dsts appended to the all-zero MAC; replace moved the unicast MAC (bridge -j fdb)');
  const ourFdb = (await k.net.listFdb('pw.vxlan')).map((f) => `${f.mac} ${f.dst?.toString()} ${f.permanent}`).sort();
  t.same(ourFdb, ['00:00:00:00:00:00 198.18.0.2 true', '00:00:00:00:00:00 198.18.0.3 true', '02:00:00:00:00:06 198.18.0.4 true']);

  await k.net.deleteFdb({ dev: 'pw.vxlan', mac: zero, dst: IpAddress.parse('198.18.0.2'), permanent: true });
  await k.net.deleteFdb({ dev: 'pw.vxlan', mac: zero, dst: IpAddress.parse('198.18.0.2'), permanent: true }); // idempotent
  t.same((await bridgeJson<{ mac: string; dst?: string }[]>(ns, ['fdb', 'show', 'dev', 'pw.vxlan'])).map((f) => `${f.mac} ${f.dst}`).sort(), ['00:00:00:00:00:00 198.18.0.3', '02:00:00:00:00:06 198.18.0.4'], 'deleted exactly one dst');
  await k.net.deleteNeighbor({ dev: 'pw.vxlan', ip: vtep, mac: '02:00:00:00:00:06', permanent: true });
  await k.net.deleteNeighbor({ dev: 'pw.vxlan', ip: vtep, mac: '02:00:00:00:00:06', permanent: true }); // idempotent
  t.same(await ipJson(ns, ['neigh', 'show', 'dev', 'pw.vxlan']), [], 'neighbour gone');
  await t.rejects(k.net.replaceNeighbor({ dev: 'pw.vxlan', ip: vtep, mac: 'zz:00:00:00:00:00', permanent: true }), { name: 'InvalidInputError', field: 'mac' });
});

labTest('batches: 10,000 routes with #5000 bad, neighbours and FDB in one go', { prefix: 'pwk-rt', requires: ['vxlan', 'veth'], timeout: 120_000 }, async (t, lab) => {
  const { ns, k } = await setupNode(lab);
  t.teardown(() => k.close());
  const N = 10_000;
  const changes: Change<Route>[] = [];
  for (let i = 0; i < N; i++) {
    const dst = Cidr.parse(`10.${128 + (i >> 8)}.${i & 255}.0/24`);
    // #5000 has a gateway that is on no link and no onlink: the kernel refuses it.
    const entry: Route = i === 5000
      ? { dst, gateway: IpAddress.parse('10.9.9.9'), protocol: PROTO }
      : { dst, gateway: IpAddress.parse(`198.18.${1 + (i % 200)}.0`), dev: 'pw.vxlan', onlink: true, protocol: PROTO };
    changes.push({ op: 'add', entry });
  }
  const r = await k.net.applyRoutes(changes);
  t.equal(r.applied, N - 1, 'all but one applied');
  t.equal(r.failed.length, 1);
  t.equal(r.failed[0]!.index, 5000, 'the failure is named by index');
  t.equal(r.failed[0]!.errno, 101, 'ENETUNREACH');
  t.match(r.failed[0]!.message, /route #5000 add: ENETUNREACH/);
  t.equal(r.failed[0]!.change, changes[5000]);
  const count = (await execOk(null, ['ip', '-n', ns, 'route', 'show', 'proto', String(PROTO)])).trim().split('\n').length;
  t.equal(count, N - 1, 'iproute2 sees 9,999 routes');

  const again = await k.net.applyRoutes(changes.slice(0, 3).map((c) => ({ op: 'replace' as const, entry: c.entry })));
  t.equal(again.failed.length, 0, 'replace of existing routes succeeds');

  const neigh = await k.net.applyNeighbors([
    { op: 'replace', entry: { dev: 'pw.vxlan', ip: IpAddress.parse('10.244.9.0'), mac: '02:00:00:00:09:00', permanent: true } },
    { op: 'replace', entry: { dev: 'nosuch0', ip: IpAddress.parse('10.244.8.0'), mac: '02:00:00:00:08:00', permanent: true } },
    { op: 'delete', entry: { dev: 'pw.vxlan', ip: IpAddress.parse('10.244.7.0'), mac: '02:00:00:00:07:00', permanent: true } },
  ]);
  t.equal(neigh.applied, 2, 'delete of a missing neighbour counts as applied');
  t.same(neigh.failed.map((f) => [f.index, f.errno]), [[1, 19]], 'unknown dev named at its index (ENODEV)');
  t.match(neigh.failed[0]!.message, /nosuch0/);

  const fdb = await k.net.applyFdb([
    { op: 'add', entry: { dev: 'pw.vxlan', mac: '00:00:00:00:00:00', dst: IpAddress.parse('198.18.0.7'), permanent: true } },
    { op: 'add', entry: { dev: 'pw.vxlan', mac: '00:00:00:00:00:00', dst: IpAddress.parse('198.18.0.8'), permanent: true } },
    { op: 'replace', entry: { dev: 'pw.vxlan', mac: '02:00:00:00:09:00', dst: IpAddress.parse('198.18.0.9'), permanent: true } },
  ]);
  t.same([fdb.applied, fdb.failed.length], [3, 0]);
  t.equal((await bridgeJson(ns, ['fdb', 'show', 'dev', 'pw.vxlan'])).length, 3);

  const del = await k.net.applyRoutes(changes.map((c) => ({ op: 'delete' as const, entry: c.entry })));
  t.equal(del.failed.length, 0, 'deleting all (including the one never added) succeeds');
  t.equal((await execOk(null, ['ip', '-n', ns, 'route', 'show', 'proto', String(PROTO)])).trim(), '', 'nothing left behind');
});

labTest('IPv6: address, route, neighbour', { prefix: 'pwk-rt', requires: ['vxlan', 'veth'] }, async (t, lab) => {
  const { ns, k } = await setupNode(lab);
  t.teardown(() => k.close());
  await k.net.addAddress('eth0', Cidr.parse('fd00:198:18::1/64'));
  await k.net.addAddress('eth0', Cidr.parse('fd00:198:18::1/64')); // idempotent
  const a = await ipJson<{ addr_info: { local: string; prefixlen: number; family: string; scope: string }[] }[]>(ns, ['addr', 'show', 'dev', 'eth0']);
  t.ok(a[0]!.addr_info.some((x) => x.local === 'fd00:198:18::1' && x.prefixlen === 64), 'v6 address present');
  await k.net.replaceRoute({ dst: Cidr.parse('fd00:244:5::/64'), gateway: IpAddress.parse('fd00:198:18::2'), dev: 'eth0', protocol: PROTO });
  const r = await ipJson<IpRoute[]>(ns, ['-6', 'route', 'show', 'proto', String(PROTO)]);
  t.same(r.map((x) => [x.dst, x.gateway, x.dev]), [['fd00:244:5::/64', 'fd00:198:18::2', 'eth0']]);
  const listed = await k.net.listRoutes({ family: 6, protocol: PROTO });
  t.same(listed.map((x) => [x.dst.toString(), x.gateway?.toString(), x.dev]), [['fd00:244:5::/64', 'fd00:198:18::2', 'eth0']]);
  await k.net.replaceNeighbor({ dev: 'eth0', ip: IpAddress.parse('fd00:198:18::2'), mac: '02:00:00:00:00:22', permanent: true });
  const n = await ipJson<{ dst: string; lladdr: string }[]>(ns, ['-6', 'neigh', 'show', 'dev', 'eth0', 'nud', 'permanent']);
  t.same(n.map((x) => [x.dst, x.lladdr]), [['fd00:198:18::2', '02:00:00:00:00:22']]);
  t.ok((await k.net.listNeighbors('eth0')).some((x) => x.ip.toString() === 'fd00:198:18::2' && x.permanent));
  await k.net.deleteRoute({ dst: Cidr.parse('fd00:244:5::/64'), protocol: PROTO });
  await k.net.deleteNeighbor({ dev: 'eth0', ip: IpAddress.parse('fd00:198:18::2'), mac: '02:00:00:00:00:22', permanent: true });
  await k.net.deleteAddress('eth0', Cidr.parse('fd00:198:18::1/64'));
  t.equal((await k.net.listRoutes({ family: 6, protocol: PROTO })).length, 0);
  t.notOk((await k.net.listAddresses('eth0')).some((x) => x.cidr.toString() === 'fd00:198:18::1/64'), 'v6 address deleted');
});
