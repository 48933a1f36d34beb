// The production batch path: fast encoders for the common shapes, schema codecs for the
// rest, the same messages as the single-change calls; devices from the ifindex cache.
import t from 'tap';
import { Cidr, IpAddress } from '../../common/ip';
import { NetlinkNetworkKernel } from '../network-kernel';
import * as C from '../rtnetlink/constants';
import { CAPTURED } from '../rtnetlink/fixtures';
import { decodeNeigh, encodeDelNeigh, encodeNewNeigh } from '../rtnetlink/neigh';
import { parseHeader } from '../rtnetlink/nlmsg';
import { decodeRoute, encodeDelRoute, encodeNewRoute } from '../rtnetlink/route';
import { FakeTransport } from '../testing/fake-transport';
import type { Change, FdbEntry, NeighborEntry, Route } from '../types';

const vx0 = Buffer.from(CAPTURED.vxlan, 'hex'); // link vx0, ifindex 3

function kernel(): { k: NetlinkNetworkKernel; tr: FakeTransport; dumps: () => number } {
  const tr = new FakeTransport();
  let dumps = 0;
  tr.onRequest = (msg) => {
    const h = parseHeader(msg);
    if (h.type === C.RTM_GETLINK && (h.flags & C.NLM_F_DUMP) === C.NLM_F_DUMP) {
      dumps++;
      return [vx0];
    }
    return 19;
  };
  return { k: new NetlinkNetworkKernel(tr, undefined), tr, dumps: () => dumps };
}

/** Header type, flags without ACK (the transport adds it), and the decoded route. */
function routeView(m: Buffer): unknown {
  const h = parseHeader(m);
  const d = decodeRoute(m);
  return { type: h.type, flags: h.flags & ~C.NLM_F_ACK, oif: d.oif, rtn: d.rtnType, route: { ...d.route, dst: d.route.dst.toString(), gateway: d.route.gateway?.toString() } };
}

t.test('routes: fast messages decode exactly like the schema codec\'s', async (t) => {
  const { k, tr } = kernel();
  const gw = IpAddress.parse('198.18.0.2');
  const routes: Change<Route>[] = [
    { op: 'add', entry: { dst: Cidr.parse('10.244.5.0/24'), gateway: gw, dev: 'vx0', onlink: true } },
    { op: 'replace', entry: { dst: Cidr.parse('10.244.6.7/24'), gateway: gw, dev: 'vx0', onlink: true, protocol: 99, metric: 5 } },
    { op: 'add', entry: { dst: Cidr.parse('10.245.0.0/16'), dev: 'vx0' } },
    { op: 'add', entry: { dst: Cidr.parse('10.246.0.0/16'), gateway: gw, table: 1000 } },
    { op: 'delete', entry: { dst: Cidr.parse('10.244.7.0/24'), gateway: gw, dev: 'vx0' } },
    { op: 'delete', entry: { dst: Cidr.parse('10.244.8.0/24'), type: 'unicast', protocol: 4 } },
    { op: 'add', entry: { dst: Cidr.parse('fd00:244:5::/64'), gateway: IpAddress.parse('fd00::2'), dev: 'vx0' } }, // schema path
    { op: 'add', entry: { dst: Cidr.parse('10.96.0.0/12'), type: 'blackhole' } }, // schema path
  ];
  const r = await k.applyRoutes(routes);
  t.same(r, { applied: routes.length, failed: [] });
  const sent = tr.batches[0]!;
  routes.forEach((c, i) => {
    const w = { route: c.entry, oif: c.entry.dev ? 3 : undefined };
    const generic = c.op === 'delete' ? encodeDelRoute(w) : encodeNewRoute(w, c.op);
    t.same(routeView(sent[i]!), routeView(generic), `change ${i} (${c.op} ${c.entry.dst.toString()})`);
  });
});

t.test('neighbours and FDB: fast messages decode like the schema codec\'s', async (t) => {
  const { k, tr } = kernel();
  const neigh: Change<NeighborEntry>[] = [
    { op: 'add', entry: { dev: 'vx0', ip: IpAddress.parse('10.244.5.0'), mac: '02:00:00:00:00:05', permanent: true } },
    { op: 'replace', entry: { dev: 'vx0', ip: IpAddress.parse('10.244.6.0'), mac: '02:AB:00:00:00:06', permanent: false } },
    { op: 'delete', entry: { dev: 'vx0', ip: IpAddress.parse('10.244.7.0'), mac: '02:00:00:00:00:07', permanent: true } },
    { op: 'add', entry: { dev: 'vx0', ip: IpAddress.parse('fd00::5'), mac: '02:00:00:00:00:08', permanent: true } },
  ];
  const fdb: Change<FdbEntry>[] = [
    { op: 'add', entry: { dev: 'vx0', mac: '00:00:00:00:00:00', dst: IpAddress.parse('198.18.0.2'), permanent: true } },
    { op: 'replace', entry: { dev: 'vx0', mac: '02:00:00:00:00:05', dst: IpAddress.parse('198.18.0.3'), permanent: true } },
    { op: 'delete', entry: { dev: 'vx0', mac: '02:00:00:00:00:05', dst: IpAddress.parse('198.18.0.3'), permanent: true } },
    { op: 'add', entry: { dev: 'vx0', mac: '02:00:00:00:00:09', permanent: true } }, // no dst: schema path
  ];
  t.same(await k.applyNeighbors(neigh), { applied: 4, failed: [] });
  t.same(await k.applyFdb(fdb), { applied: 4, failed: [] });
  const view = (m: Buffer): unknown => {
    const h = parseHeader(m);
    const n = decodeNeigh(m);
    return { ...n, type: h.type, nlflags: h.flags & ~C.NLM_F_ACK, dst: n.dst?.toString() };
  };
  neigh.forEach((c, i) => {
    const e = c.entry;
    const w = { family: e.ip.family === 4 ? C.AF_INET : C.AF_INET6, ifindex: 3, state: e.permanent ? C.NUD_PERMANENT : C.NUD_REACHABLE, flags: 0, dst: e.ip, lladdr: Buffer.from(e.mac.replace(/:/g, ''), 'hex') };
    t.same(view(tr.batches[0]![i]!), view(c.op === 'delete' ? encodeDelNeigh(w) : encodeNewNeigh(w, c.op === 'add' ? 'add' : 'replace')), `neighbour ${i}`);
  });
  fdb.forEach((c, i) => {
    const e = c.entry;
    const w = { family: C.AF_BRIDGE, ifindex: 3, state: C.NUD_PERMANENT, flags: C.NTF_SELF, dst: e.dst, lladdr: Buffer.from(e.mac.replace(/:/g, ''), 'hex') };
    t.same(view(tr.batches[1]![i]!), view(c.op === 'delete' ? encodeDelNeigh(w) : encodeNewNeigh(w, c.op === 'add' ? 'append' : 'replace')), `fdb ${i}`);
  });
  const bad = await k.applyNeighbors([{ op: 'add', entry: { dev: 'vx0', ip: IpAddress.parse('10.0.0.1'), mac: 'zz', permanent: true } }]);
  t.match(bad.failed, [{ index: 0, errno: 22 }], 'a bad MAC fails its own change');
});

t.test('devices come from the ifindex cache: one link dump, refreshed on a miss; stale indexes retried once', async (t) => {
  const { k, tr, dumps } = kernel();
  const add = (n: number, dev = 'vx0'): Change<Route>[] =>
    Array.from({ length: n }, (_, i) => ({ op: 'add' as const, entry: { dst: Cidr.parse(`10.${100 + i}.0.0/16`), gateway: IpAddress.parse('198.18.0.2'), dev, onlink: true } }));
  await k.applyRoutes(add(3));
  await k.applyRoutes(add(3));
  await k.applyRoutes(add(3));
  t.equal(dumps(), 1, 'three batches, one link dump');
  const r = await k.applyRoutes(add(2, 'gone0'));
  t.equal(dumps(), 2, 'an unknown device refreshes once');
  t.same(r.failed.map((f) => [f.index, f.errno]), [[0, 19], [1, 19]]);
  t.match(r.failed[0]!.message, /gone0/);
  // The kernel says ENODEV for a cached index (link re-created): refresh and resend those only.
  let calls = 0;
  tr.onBatch = (_m, i) => (calls++ < 3 && i === 1 ? 19 : 0);
  const before = tr.batches.length;
  const r2 = await k.applyRoutes(add(3));
  t.same(r2, { applied: 3, failed: [] });
  t.equal(tr.batches.length - before, 2, 'the failed change was sent again');
  t.equal(tr.batches[tr.batches.length - 1]!.length, 1, 'only that one');
  t.equal(dumps(), 3, 'after one refresh');
});
